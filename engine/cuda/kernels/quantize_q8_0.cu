// Activations -> Q8_0 per 32-block, exactly as quantize_row_q8_0_ref (ggml): d =
// amax / 127 rounded to fp16, q = roundf(x / d). One warp per block, a lane per value:
// the max is exact whatever the reduction order, and the division and roundf are
// IEEE-exact on the device, so the quantized values equal the CPU's bit for bit.
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

__global__ void quantize_q8_0_kernel(const float* __restrict__ x, size_t n_blocks, int8_t* __restrict__ qs,
                                     float* __restrict__ d) {
    const size_t block = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
    const int lane = threadIdx.x % kWarpSize;
    if (block >= n_blocks) return;  // whole warps exit together
    const float v = x[block * 32 + lane];
    const float amax = warp_max(fabsf(v));
    const float scale = amax / 127.0f;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    qs[block * 32 + lane] = int8_t(roundf(v * inv));
    if (lane == 0) d[block] = __half2float(__float2half_rn(scale));
}

}  // namespace

void quantize_q8_0(const float* x, int n, int cols, DevQ8 out, cudaStream_t s) {
    const size_t n_blocks = size_t(n) * size_t(cols / 32);
    if (n_blocks == 0) return;
    constexpr unsigned kThreads = 256;
    quantize_q8_0_kernel<<<grid_for(n_blocks * kWarpSize, kThreads), kThreads, 0, s>>>(x, n_blocks, out.qs, out.d);
}

}  // namespace reprise::engine::cuda
