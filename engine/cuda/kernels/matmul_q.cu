// Quantized matrix x matrix for prefill and batched decode: tokens in tiles of 8, one
// warp per (row, tile), each weight chunk loaded once per tile and used for its 8
// tokens. Blocks that share rows are adjacent in the grid (the token tile is the fast
// index), so they run together and a row's bytes come from HBM once and from L2 for
// the other tiles. The reduction is q_dot.cuh's, so results equal matvec_q's bit for
// bit. CPU reference: vec_dot_<type>_<activations>_ref (engine/kernels/matmul_<type>.hpp).
//
// Why not a shared-memory tiled GEMM or tensor cores (mma.sync int8): either sums a
// (row, token) product in a different order for different batch shapes unless built
// for it, and batch invariance is what makes batching, preemption and speculation exact
// (kernels.hpp). A tensor-core kernel with a fixed per-row order is the next step for
// long prefills; decode, the bandwidth-bound part, does not need it.
#include "engine/cuda/kernels/q_dot.cuh"

namespace reprise::engine::cuda {
namespace {

constexpr int kTileTokens = 8;
constexpr int kRowsPerBlock = 8;

template <WeightType T>
__global__ void matmul_q_kernel(DevWeight w, DevQ8 x, int n_tok, float* __restrict__ y) {
    const int row = blockIdx.y * kRowsPerBlock + threadIdx.x / kWarpSize;
    const int t0 = blockIdx.x * kTileTokens;
    if (row >= w.rows) return;
    const int n = min(kTileTokens, n_tok - t0);
    float acc[kTileTokens];
    q_dot_row<T, kTileTokens>(w, x, row, t0, n, acc);
    if (threadIdx.x % kWarpSize == 0)
#pragma unroll
        for (int t = 0; t < kTileTokens; ++t)
            if (t < n) y[size_t(t0 + t) * w.rows + row] = acc[t];
}

}  // namespace

void matmul_q(const DevWeight& w, DevQ8 x, int n, float* y, cudaStream_t s) {
    if (n <= 0 || w.rows == 0) return;
    const dim3 grid(grid_for(size_t(n), kTileTokens), grid_for(size_t(w.rows), kRowsPerBlock));
    const dim3 block(kRowsPerBlock * kWarpSize);
    dispatch_quantized(w.type, [&]<WeightType T>() { matmul_q_kernel<T><<<grid, block, 0, s>>>(w, x, n, y); });
}

}  // namespace reprise::engine::cuda
