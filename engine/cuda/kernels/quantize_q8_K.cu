// Activations -> Q8_K per 256-block, exactly as quantize_row_q8_K_ref (ggml): max = the
// first value of largest magnitude, iscale = -127 / max, q = min(127, nearest_int(iscale
// * x)) (round half to even: ggml's 1.5 * 2^23 trick, __float2int_rn here), d = 1 /
// iscale, and the sums of each 16 quants (bsums), which the K-quant products use for
// the weights' minimums. An all-zero block gets d = 0, q = 0, bsums = 0.
// One warp per block, 8 consecutive values a lane: the (magnitude, first index)
// maximum is exact whatever the reduction order, the products are rounded alone
// (__fmul_rn), so the result equals the CPU's bit for bit.
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

__global__ void quantize_q8_K_kernel(const float* __restrict__ x, size_t n_blocks, int8_t* __restrict__ qs,
                                     float* __restrict__ d, int16_t* __restrict__ bsums) {
    const size_t block = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
    const int lane = threadIdx.x % kWarpSize;
    if (block >= n_blocks) return;  // whole warps exit together
    const float* xb = x + block * 256 + size_t(lane) * 8;
    float v[8];
    float amax = 0.0f, max = 0.0f;
    int at = 256;  // index of max in the block; 256: none yet (all zero)
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        v[i] = xb[i];
        const float a = fabsf(v[i]);
        if (a > amax) amax = a, max = v[i], at = lane * 8 + i;
    }
    // Largest magnitude, ties to the lowest index (the reference keeps the first).
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float a2 = __shfl_xor_sync(0xffffffffu, amax, o), m2 = __shfl_xor_sync(0xffffffffu, max, o);
        const int at2 = __shfl_xor_sync(0xffffffffu, at, o);
        if (a2 > amax || (a2 == amax && at2 < at)) amax = a2, max = m2, at = at2;
    }
    int8_t* qb = qs + block * 256 + size_t(lane) * 8;
    int sum = 0;
    if (amax == 0.0f) {
#pragma unroll
        for (int i = 0; i < 8; ++i) qb[i] = 0;
    } else {
        const float iscale = -127.0f / max;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int q = min(127, __float2int_rn(__fmul_rn(iscale, v[i])));
            qb[i] = int8_t(q);
            sum += q;
        }
        if (lane == 0) d[block] = 1.0f / iscale;
    }
    if (amax == 0.0f && lane == 0) d[block] = 0.0f;
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);  // lanes 2g and 2g+1 hold group g of 16
    if (lane % 2 == 0) bsums[block * 16 + size_t(lane / 2)] = int16_t(sum);
}

}  // namespace

void quantize_q8_K(const float* x, int n, int cols, DevQ8 out, cudaStream_t s) {
    const size_t n_blocks = size_t(n) * size_t(cols / 256);
    if (n_blocks == 0) return;
    constexpr unsigned kThreads = 256;
    quantize_q8_K_kernel<<<grid_for(n_blocks * kWarpSize, kThreads), kThreads, 0, s>>>(x, n_blocks, out.qs, out.d,
                                                                                       out.bsums);
}

}  // namespace reprise::engine::cuda
