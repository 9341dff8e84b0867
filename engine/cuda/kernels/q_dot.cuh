#pragma once
// One weight row against up to NT tokens' Q8_0 activations, by one warp: the product
// behind matvec_q.cu and matmul_q.cu.
//
// The row is cut into 16-byte chunks of quantized weights (Q8_0: half a 32-block;
// Q4_0: a whole block's nibbles). Lane l takes chunks l, l + 32, l + 64, ... and, per
// chunk, forms the exact integer dot with __dp4a, scales it by d_w * d_x in float and
// adds it to its running sum; the 32 lane sums then meet in warp_sum's fixed tree.
// So a (row, token) result depends on the row and the token alone: the same for any
// NT and any launch shape (batch invariance, kernels.hpp). Reading consecutive chunks
// in consecutive lanes makes every warp load 512 contiguous bytes: coalesced.
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {

// Per byte: v - 8 (nibbles 0..15 become the signed values -8..7 for __dp4a).
__device__ __forceinline__ int nibbles_minus_8(int v) { return int(__vsub4(unsigned(v), 0x08080808u)); }

template <WeightType T, int NT>
__device__ __forceinline__ void q_dot_row(const DevWeight& w, const DevQ8& x, int row, int t0, int n_tok,
                                          float (&acc)[NT]) {
    const int lane = threadIdx.x % kWarpSize;
    const int cols = w.cols, nb = cols / 32;
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
    if constexpr (T == WeightType::Q8_0) {
        const int8_t* wrow = w.qs + size_t(row) * cols;
        const uint16_t* drow = w.d + size_t(row) * nb;
        for (int c = lane; c < cols / 16; c += kWarpSize) {
            const int4 q = *reinterpret_cast<const int4*>(wrow + size_t(c) * 16);
            const int b = c / 2;
            const float dw = fp16_bits_to_float(drow[b]);
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                if (t >= n_tok) break;
                const size_t tok = size_t(t0 + t);
                const int4 a = *reinterpret_cast<const int4*>(x.qs + tok * cols + size_t(c) * 16);
                int sum = __dp4a(q.x, a.x, 0);
                sum = __dp4a(q.y, a.y, sum);
                sum = __dp4a(q.z, a.z, sum);
                sum = __dp4a(q.w, a.w, sum);
                acc[t] = fmaf(float(sum), dw * x.d[tok * nb + b], acc[t]);  // explicit: no contraction choices
            }
        }
    } else {
        const int8_t* wrow = w.qs + size_t(row) * (cols / 2);
        const uint16_t* drow = w.d + size_t(row) * nb;
        for (int b = lane; b < nb; b += kWarpSize) {
            const int4 q = *reinterpret_cast<const int4*>(wrow + size_t(b) * 16);
            const float dw = fp16_bits_to_float(drow[b]);
            // Elements 0..15 are the low nibbles, 16..31 the high ones.
            const int lo0 = nibbles_minus_8(q.x & 0x0F0F0F0F), hi0 = nibbles_minus_8((q.x >> 4) & 0x0F0F0F0F);
            const int lo1 = nibbles_minus_8(q.y & 0x0F0F0F0F), hi1 = nibbles_minus_8((q.y >> 4) & 0x0F0F0F0F);
            const int lo2 = nibbles_minus_8(q.z & 0x0F0F0F0F), hi2 = nibbles_minus_8((q.z >> 4) & 0x0F0F0F0F);
            const int lo3 = nibbles_minus_8(q.w & 0x0F0F0F0F), hi3 = nibbles_minus_8((q.w >> 4) & 0x0F0F0F0F);
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                if (t >= n_tok) break;
                const size_t tok = size_t(t0 + t);
                const int8_t* xq = x.qs + tok * cols + size_t(b) * 32;
                const int4 a0 = *reinterpret_cast<const int4*>(xq);
                const int4 a1 = *reinterpret_cast<const int4*>(xq + 16);
                int sum = __dp4a(lo0, a0.x, 0);
                sum = __dp4a(lo1, a0.y, sum);
                sum = __dp4a(lo2, a0.z, sum);
                sum = __dp4a(lo3, a0.w, sum);
                sum = __dp4a(hi0, a1.x, sum);
                sum = __dp4a(hi1, a1.y, sum);
                sum = __dp4a(hi2, a1.z, sum);
                sum = __dp4a(hi3, a1.w, sum);
                acc[t] = fmaf(float(sum), dw * x.d[tok * nb + b], acc[t]);  // explicit: no contraction choices
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = warp_sum(acc[t]);
}

}  // namespace reprise::engine::cuda
