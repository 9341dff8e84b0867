#pragma once
// One weight row against up to NT tokens' quantized activations, by one warp: the
// product behind matvec_q.cu and matmul_q.cu, for every quantized weight type.
//
// The row is cut into units (q_units.cuh: a 16-byte half block of Q8_0, a 32-block,
// or 64 elements of a K-quant super-block). Lane l takes units l, l + 32, l + 64, ...
// and, per unit, forms the exact integer dots with __dp4a, scales them in float and
// adds them to its running sum; the 32 lane sums then meet in warp_sum's fixed tree.
// So a (row, token) result depends on the row and the token alone: the same for any
// NT and any launch shape (batch invariance, kernels.hpp). Consecutive units in
// consecutive lanes make every warp read a contiguous stretch of the row: coalesced.
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"
#include "engine/cuda/kernels/q_units.cuh"

namespace reprise::engine::cuda {

template <WeightType T, int NT>
__device__ __forceinline__ void q_dot_row(const DevWeight& w, const DevQ8& x, int row, int t0, int n_tok,
                                          float (&acc)[NT]) {
    units::lane_dot<T, NT>(w, x, row, t0, n_tok, int(threadIdx.x % kWarpSize), acc);
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = warp_sum(acc[t]);
}

// Calls f.template operator()<T>() with the weight type as a template argument (the
// kernels are instantiated per type).
template <class F>
void dispatch_quantized(WeightType t, F&& f) {
    switch (t) {
    case WeightType::Q8_0: f.template operator()<WeightType::Q8_0>(); break;
    case WeightType::Q4_0: f.template operator()<WeightType::Q4_0>(); break;
    case WeightType::Q4_1: f.template operator()<WeightType::Q4_1>(); break;
    case WeightType::Q5_0: f.template operator()<WeightType::Q5_0>(); break;
    case WeightType::Q5_1: f.template operator()<WeightType::Q5_1>(); break;
    case WeightType::Q4_K: f.template operator()<WeightType::Q4_K>(); break;
    case WeightType::Q5_K: f.template operator()<WeightType::Q5_K>(); break;
    case WeightType::Q6_K: f.template operator()<WeightType::Q6_K>(); break;
    case WeightType::F32: break;
    }
}

}  // namespace reprise::engine::cuda
