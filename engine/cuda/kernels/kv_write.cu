// Stores the new tokens' K and V rows into their blocks of the paged pool (the CPU
// path's memcpy into KvSequence::k_row / v_row).
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

__global__ void kv_write_kernel(DevKv kv, const float* __restrict__ k, const float* __restrict__ v) {
    const int t = blockIdx.x;  // tokens on x: no 65,535 limit
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= kv.row_stride) return;
    const int p = kv.pos[t];
    const int block = kv.tables[kv.table_of[t] + p / kv.block_size];
    const size_t row = size_t(block) * kv.block_stride + size_t(p % kv.block_size) * kv.row_stride + c;
    kv.base[row + kv.k_offset] = k[size_t(t) * kv.row_stride + c];
    kv.base[row + kv.v_offset] = v[size_t(t) * kv.row_stride + c];
}

}  // namespace

void kv_write(const DevKv& kv, const float* k, const float* v, int n_tok, cudaStream_t s) {
    if (n_tok <= 0) return;
    constexpr unsigned kThreads = 256;
    kv_write_kernel<<<dim3(unsigned(n_tok), grid_for(size_t(kv.row_stride), kThreads)), kThreads, 0, s>>>(kv, k, v);
}

}  // namespace reprise::engine::cuda
