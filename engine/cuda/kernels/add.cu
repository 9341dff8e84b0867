// The residual add x += y, elementwise (the CPU does the same loop in model.cpp).
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

__global__ void add_kernel(float* __restrict__ x, const float* __restrict__ y, size_t n) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}

}  // namespace

void add_inplace(float* x, const float* y, size_t n, cudaStream_t s) {
    if (n == 0) return;
    constexpr unsigned kThreads = 256;
    add_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(x, y, n);
}

}  // namespace reprise::engine::cuda
