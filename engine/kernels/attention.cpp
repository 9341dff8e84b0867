#include "engine/kernels/attention.hpp"

#include <cmath>

#include "engine/kernels/matmul_f32.hpp"
#include "engine/kernels/softmax.hpp"

namespace reprise::engine {

void attention_f32(const float* q, const KvView& kv, int n_kv, int n_head, int n_head_kv, int head_dim, float* out,
                   float* scratch) {
    const int group = n_head / n_head_kv;
    const float scale = 1.0f / std::sqrt(float(head_dim));
    const int bs = kv.block_size;
    for (int h = 0; h < n_head; ++h) {
        const float* qh = q + h * head_dim;
        const size_t head = size_t(h / group) * head_dim;
        // Block by block: one table lookup per block, then contiguous rows.
        for (int p0 = 0; p0 < n_kv; p0 += bs) {
            const float* k = kv.base + size_t(kv.blocks[p0 / bs]) * kv.block_stride + kv.k_offset + head;
            const int rows = n_kv - p0 < bs ? n_kv - p0 : bs;
            for (int r = 0; r < rows; ++r) scratch[p0 + r] = dot_f32(qh, k + size_t(r) * kv.row_stride, head_dim) * scale;
        }
        softmax_f32(scratch, n_kv);
        float* oh = out + h * head_dim;
        for (int d = 0; d < head_dim; ++d) oh[d] = 0.0f;
        for (int p0 = 0; p0 < n_kv; p0 += bs) {
            const float* v = kv.base + size_t(kv.blocks[p0 / bs]) * kv.block_stride + kv.v_offset + head;
            const int rows = n_kv - p0 < bs ? n_kv - p0 : bs;
            for (int r = 0; r < rows; ++r) {
                const float a = scratch[p0 + r];
                const float* vh = v + size_t(r) * kv.row_stride;
                for (int d = 0; d < head_dim; ++d) oh[d] += a * vh[d];
            }
        }
    }
}

}  // namespace reprise::engine
