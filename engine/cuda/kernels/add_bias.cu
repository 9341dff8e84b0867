// x[t][i] += b[i]: qwen2's biases of wq / wk / wv, added to the products before RoPE
// (the CPU's loop in Model::forward_cpu; one float add each, so exact).
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

__global__ void add_bias_kernel(float* __restrict__ x, const float* __restrict__ b, size_t n, int width) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) x[i] += b[i % size_t(width)];
}

}  // namespace

void add_bias(float* x, const float* b, int n_tok, int width, cudaStream_t s) {
    const size_t n = size_t(n_tok) * size_t(width);
    if (n == 0) return;
    constexpr unsigned kThreads = 256;
    add_bias_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(x, b, n, width);
}

}  // namespace reprise::engine::cuda
