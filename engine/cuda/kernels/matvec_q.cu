// Quantized matrix x vector for decode (n <= 8 tokens): one warp per weight row, every
// token's activations against that row while it is in registers, so the weights (the
// bulk of the bytes a decode step reads) stream from memory once per step. CPU
// reference: vec_dot_<type>_<activations>_ref (engine/kernels/matmul_<type>.hpp).
#include "engine/cuda/kernels/q_dot.cuh"

namespace reprise::engine::cuda {
namespace {

constexpr int kRowsPerBlock = 4;  // warps per block: small blocks spread rows over every SM

template <WeightType T, int NT>
__global__ void matvec_q_kernel(DevWeight w, DevQ8 x, int n_tok, float* __restrict__ y) {
    const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarpSize;
    if (row >= w.rows) return;
    float acc[NT];
    q_dot_row<T, NT>(w, x, row, 0, n_tok, acc);
    if (threadIdx.x % kWarpSize == 0)
#pragma unroll
        for (int t = 0; t < NT; ++t)
            if (t < n_tok) y[size_t(t) * w.rows + row] = acc[t];
}

template <WeightType T>
void launch(const DevWeight& w, DevQ8 x, int n, float* y, cudaStream_t s) {
    const dim3 grid(grid_for(size_t(w.rows), kRowsPerBlock)), block(kRowsPerBlock * kWarpSize);
    // The smallest instantiation that holds n: fewer registers, same results (q_dot.cuh).
    if (n == 1) matvec_q_kernel<T, 1><<<grid, block, 0, s>>>(w, x, n, y);
    else if (n == 2) matvec_q_kernel<T, 2><<<grid, block, 0, s>>>(w, x, n, y);
    else if (n <= 4) matvec_q_kernel<T, 4><<<grid, block, 0, s>>>(w, x, n, y);
    else matvec_q_kernel<T, 8><<<grid, block, 0, s>>>(w, x, n, y);
}

}  // namespace

void matvec_q(const DevWeight& w, DevQ8 x, int n, float* y, cudaStream_t s) {
    if (n <= 0 || w.rows == 0) return;
    if (n > kMatvecMaxTokens) return matmul_q(w, x, n, y, s);
    dispatch_quantized(w.type, [&]<WeightType T>() { launch<T>(w, x, n, y, s); });
}

}  // namespace reprise::engine::cuda
