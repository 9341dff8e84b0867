// Token embedding lookup: rows of the (possibly quantized) table, dequantized as
// dequantize_row (ggml_types.cpp and the ggml_quants_*.cpp) does, element by element
// (q_units.cuh's dequant_element), so both paths start from identical floats.
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"
#include "engine/cuda/kernels/q_units.cuh"

namespace reprise::engine::cuda {
namespace {

__global__ void embed_kernel(DevWeight table, const int32_t* __restrict__ ids, float* __restrict__ out) {
    const int t = blockIdx.x;  // tokens on x: no 65,535 limit
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    const int id = ids[t];
    const int cols = table.cols;
    if (id < 0 || c >= cols) return;
    out[size_t(t) * cols + c] = units::dequant_element(table, id, c);
}

}  // namespace

void embed_rows(const DevWeight& table, const int32_t* ids, int n, float* out, cudaStream_t s) {
    if (n <= 0) return;
    constexpr unsigned kThreads = 256;
    embed_kernel<<<dim3(unsigned(n), grid_for(size_t(table.cols), kThreads)), kThreads, 0, s>>>(table, ids, out);
}

}  // namespace reprise::engine::cuda
