// RMSNorm, one block per row. The sum of squares is taken in double as the CPU
// reference (rmsnorm_f32) does, which makes the two agree to the last bit or two
// whatever the order of the additions.
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rmsnorm_kernel(const float* __restrict__ x, const int32_t* __restrict__ rows,
                               const float* __restrict__ w, float* __restrict__ y, int n, float eps) {
    const int i = blockIdx.x;
    const float* xr = x + size_t(rows ? rows[i] : i) * n;
    double ss = 0.0;
    for (int c = threadIdx.x; c < n; c += kThreads) ss += double(xr[c]) * xr[c];
    __shared__ double partial[kThreads / kWarpSize];
    ss = warp_sum(ss);
    if (threadIdx.x % kWarpSize == 0) partial[threadIdx.x / kWarpSize] = ss;
    __syncthreads();
    __shared__ float scale;
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int k = 0; k < kThreads / kWarpSize; ++k) total += partial[k];
        scale = 1.0f / sqrtf(float(total / n) + eps);
    }
    __syncthreads();
    float* yr = y + size_t(i) * n;
    for (int c = threadIdx.x; c < n; c += kThreads) yr[c] = xr[c] * scale * w[c];
}

}  // namespace

void rmsnorm(const float* x, const int32_t* rows, const float* w, float* y, int n_rows, int n, float eps,
             cudaStream_t s) {
    if (n_rows <= 0) return;
    rmsnorm_kernel<<<unsigned(n_rows), kThreads, 0, s>>>(x, rows, w, y, n, eps);
}

}  // namespace reprise::engine::cuda
