// SwiGLU, elementwise: silu(gate) * up (reference swiglu_f32); out may be gate. expf differs from the
// host's libm by at most 2 ulp; the tests allow for that.
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

__global__ void swiglu_kernel(float* out, const float* gate, const float* __restrict__ up, size_t n) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
}

}  // namespace

void swiglu(float* out, const float* gate, const float* up, size_t n, cudaStream_t s) {
    if (n == 0) return;
    constexpr unsigned kThreads = 256;
    swiglu_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(out, gate, up, n);
}

}  // namespace reprise::engine::cuda
