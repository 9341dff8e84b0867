#pragma once
// Causal grouped-query attention for one query token against n_kv cached positions,
// reading K and V through a paged view (kv_cache.hpp): position p lives in block
// blocks[p / block_size], row p % block_size. A contiguous cache is the special case
// of one block holding every position.
#include <cstddef>
#include <cstdint>

namespace reprise::engine {

struct KvView {
    const float* base = nullptr;     // the pool's storage
    const int32_t* blocks = nullptr; // the sequence's block table
    int block_size = 0;
    size_t block_stride = 0;         // floats from one block to the next
    size_t k_offset = 0, v_offset = 0;  // floats from a block's start to this layer's K / V row 0
    size_t row_stride = 0;           // floats between consecutive rows (n_head_kv * head_dim)
};

// q: n_head * head_dim; out: n_head * head_dim; scratch: n_kv floats.
// Query head h reads KV head h / (n_head / n_head_kv), as llama.cpp's GQA broadcast.
// The result depends only on q and the K/V values, never on how positions are split
// into blocks, so a sequence computes the same alone, shared or re-laid out.
void attention_f32(const float* q, const KvView& kv, int n_kv, int n_head, int n_head_kv, int head_dim, float* out,
                   float* scratch);

}  // namespace reprise::engine
