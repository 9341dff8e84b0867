// Activations -> Q8_1 per 32-block, exactly as quantize_row_q8_1_ref (ggml): qs and d
// as Q8_0 (d = amax / 127 rounded to fp16, q = roundf(x / d)), and s = fp16(d * sum(q))
// with the unrounded d, which the Q4_1/Q5_1 products use for the weights' minimum.
// One warp per block, a lane per value: the max and the integer sum are exact in any
// order, and the division, product and roundf are IEEE-exact on the device.
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

__global__ void quantize_q8_1_kernel(const float* __restrict__ x, size_t n_blocks, int8_t* __restrict__ qs,
                                     float* __restrict__ d, float* __restrict__ s) {
    const size_t block = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
    const int lane = threadIdx.x % kWarpSize;
    if (block >= n_blocks) return;  // whole warps exit together
    const float v = x[block * 32 + lane];
    const float amax = warp_max(fabsf(v));
    const float scale = amax / 127.0f;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    const int q = int(roundf(__fmul_rn(v, inv)));
    qs[block * 32 + lane] = int8_t(q);
    int sum = q;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) {
        d[block] = __half2float(__float2half_rn(scale));
        s[block] = __half2float(__float2half_rn(__fmul_rn(float(sum), scale)));
    }
}

}  // namespace

void quantize_q8_1(const float* x, int n, int cols, DevQ8 out, cudaStream_t s) {
    const size_t n_blocks = size_t(n) * size_t(cols / 32);
    if (n_blocks == 0) return;
    constexpr unsigned kThreads = 256;
    quantize_q8_1_kernel<<<grid_for(n_blocks * kWarpSize, kThreads), kThreads, 0, s>>>(x, n_blocks, out.qs, out.d,
                                                                                       out.s);
}

}  // namespace reprise::engine::cuda
