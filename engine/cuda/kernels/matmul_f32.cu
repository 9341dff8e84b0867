// F32 weights x F32 activations, any number of tokens: the path of F32 reference
// models (tests compare it with the CPU's F32 model). One warp per (row, 8-token
// tile); lane l takes float4 chunks l, l + 32, ... in order, then the warp_sum tree,
// so a (row, token) result does not depend on the batch. CPU reference: dot_f32_ref.
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

constexpr int kTileTokens = 8;
constexpr int kRowsPerBlock = 8;

__global__ void matmul_f32_kernel(DevWeight w, const float* __restrict__ x, int n_tok, float* __restrict__ y) {
    const int row = blockIdx.y * kRowsPerBlock + threadIdx.x / kWarpSize;
    const int t0 = blockIdx.x * kTileTokens;
    if (row >= w.rows) return;
    const int lane = threadIdx.x % kWarpSize;
    const int n = min(kTileTokens, n_tok - t0), cols = w.cols;
    const float4* wrow = reinterpret_cast<const float4*>(w.f + size_t(row) * cols);
    float acc[kTileTokens];
#pragma unroll
    for (int t = 0; t < kTileTokens; ++t) acc[t] = 0.0f;
    for (int c = lane; c < cols / 4; c += kWarpSize) {
        const float4 q = wrow[c];
#pragma unroll
        for (int t = 0; t < kTileTokens; ++t) {
            if (t >= n) break;
            const float4 a = reinterpret_cast<const float4*>(x + size_t(t0 + t) * cols)[c];
            float s = q.x * a.x;
            s = fmaf(q.y, a.y, s);
            s = fmaf(q.z, a.z, s);
            s = fmaf(q.w, a.w, s);
            acc[t] += s;
        }
    }
#pragma unroll
    for (int t = 0; t < kTileTokens; ++t) acc[t] = warp_sum(acc[t]);
    if (lane == 0)
#pragma unroll
        for (int t = 0; t < kTileTokens; ++t)
            if (t < n) y[size_t(t0 + t) * w.rows + row] = acc[t];
}

}  // namespace

void matmul_f32(const DevWeight& w, const float* x, int n, float* y, cudaStream_t s) {
    if (n <= 0 || w.rows == 0) return;
    const dim3 grid(grid_for(size_t(n), kTileTokens), grid_for(size_t(w.rows), kRowsPerBlock));
    matmul_f32_kernel<<<grid, kRowsPerBlock * kWarpSize, 0, s>>>(w, x, n, y);
}

}  // namespace reprise::engine::cuda
