// RMSNorm of each head of Q or K in place (qwen3's attn_q_norm / attn_k_norm, before
// RoPE), one warp per (token, head) row of head_dim values. The sum of squares is taken
// in double as rmsnorm_f32 does, so the two agree to the last bit or two whatever the
// order of the additions; each element is read and written by the same lane.
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

constexpr int kRowsPerBlock = 4;

__global__ void rmsnorm_heads_kernel(float* x, const float* __restrict__ w, int n_rows, int head_dim, float eps) {
    const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarpSize;
    const int lane = threadIdx.x % kWarpSize;
    if (row >= n_rows) return;  // whole warps exit together
    float* xr = x + size_t(row) * head_dim;
    float v[kMaxHeadDim / kWarpSize];
    double ss = 0.0;
#pragma unroll
    for (int i = 0; i < kMaxHeadDim / kWarpSize; ++i) {
        const int c = lane + i * kWarpSize;
        v[i] = c < head_dim ? xr[c] : 0.0f;
        ss += double(v[i]) * v[i];
    }
    ss = warp_sum(ss);
    const float scale = 1.0f / sqrtf(float(ss / head_dim) + eps);
#pragma unroll
    for (int i = 0; i < kMaxHeadDim / kWarpSize; ++i) {
        const int c = lane + i * kWarpSize;
        if (c < head_dim) xr[c] = __fmul_rn(__fmul_rn(v[i], scale), w[c]);
    }
}

}  // namespace

void rmsnorm_heads(float* x, const float* w, int n_rows, int head_dim, float eps, cudaStream_t s) {
    if (n_rows <= 0) return;
    rmsnorm_heads_kernel<<<grid_for(size_t(n_rows), kRowsPerBlock), kRowsPerBlock * kWarpSize, 0, s>>>(
        x, w, n_rows, head_dim, eps);
}

}  // namespace reprise::engine::cuda
