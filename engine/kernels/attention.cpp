#include "engine/kernels/attention.hpp"

#include <cmath>

#include "engine/kernels/matmul_f32.hpp"
#include "engine/kernels/softmax.hpp"

namespace reprise::engine {

void attention_f32(const float* q, const KvView& kv, int n_kv, int n_head, int n_head_kv, int head_dim, float* out,
                   float* scratch) {
    const int group = n_head / n_head_kv;
    const float scale = 1.0f / std::sqrt(float(head_dim));
    for (int h = 0; h < n_head; ++h) {
        const float* qh = q + h * head_dim;
        const int kvh = h / group;
        for (int p = 0; p < n_kv; ++p) scratch[p] = dot_f32(qh, kv.k + p * kv.stride + kvh * head_dim, head_dim) * scale;
        softmax_f32(scratch, n_kv);
        float* oh = out + h * head_dim;
        for (int d = 0; d < head_dim; ++d) oh[d] = 0.0f;
        for (int p = 0; p < n_kv; ++p) {
            const float a = scratch[p];
            const float* vh = kv.v + p * kv.stride + kvh * head_dim;
            for (int d = 0; d < head_dim; ++d) oh[d] += a * vh[d];
        }
    }
}

}  // namespace reprise::engine
