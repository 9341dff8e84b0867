// Token embedding lookup: rows of the (possibly quantized) table, dequantized as
// dequantize_row (ggml_types.cpp) does, so both paths start from identical floats.
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

__global__ void embed_kernel(DevWeight table, const int32_t* __restrict__ ids, float* __restrict__ out) {
    const int t = blockIdx.x;  // tokens on x: no 65,535 limit
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    const int id = ids[t];
    const int cols = table.cols;
    if (id < 0 || c >= cols) return;
    float v;
    if (table.type == WeightType::F32) {
        v = table.f[size_t(id) * cols + c];
    } else {
        const float d = fp16_bits_to_float(table.d[size_t(id) * (cols / 32) + c / 32]);
        if (table.type == WeightType::Q8_0) {
            v = float(table.qs[size_t(id) * cols + c]) * d;
        } else {
            const int j = c % 32;
            const uint8_t byte = uint8_t(table.qs[size_t(id) * (cols / 2) + size_t(c / 32) * 16 + (j % 16)]);
            const int q = j < 16 ? (byte & 0x0F) : (byte >> 4);
            v = float(q - 8) * d;
        }
    }
    out[size_t(t) * cols + c] = v;
}

}  // namespace

void embed_rows(const DevWeight& table, const int32_t* ids, int n, float* out, cudaStream_t s) {
    if (n <= 0) return;
    constexpr unsigned kThreads = 256;
    embed_kernel<<<dim3(unsigned(n), grid_for(size_t(table.cols), kThreads)), kThreads, 0, s>>>(table, ids, out);
}

}  // namespace reprise::engine::cuda
