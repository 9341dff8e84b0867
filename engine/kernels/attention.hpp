#pragma once
// Causal grouped-query attention for one query token against n_kv cached positions.
// The KV cache is seen through a narrow view (base pointer + stride per position) so a
// contiguous cache and, later, a paged one (one view per block) can share this kernel.
#include <cstddef>

namespace reprise::engine {

struct KvView {
    const float* k = nullptr;  // position p's K row (n_head_kv * head_dim) at k + p * stride
    const float* v = nullptr;
    size_t stride = 0;         // floats between consecutive positions
};

// q: n_head * head_dim; out: n_head * head_dim; scratch: n_kv floats.
// Query head h reads KV head h / (n_head / n_head_kv), as llama.cpp's GQA broadcast.
void attention_f32(const float* q, const KvView& kv, int n_kv, int n_head, int n_head_kv, int head_dim, float* out,
                   float* scratch);

}  // namespace reprise::engine
