// Paged causal attention (reference attention_f32): one block per (token, query
// head), four warps. Warp w takes positions w, w + 4, ... of the token's sequence,
// reading each K/V row through the block table; lane l holds head dimensions l,
// l + 32, ... A warp keeps a running max, sum and output (online softmax, as
// FlashAttention), and the four warps' partial results are merged at the end. Any
// context length fits: nothing is sized by it.
//
// The result differs from the CPU's two-pass softmax only by rounding (tolerance in
// tests/engine/cuda_kernels_test.cpp), and depends on the token's own positions alone:
// the same whatever else is in the batch.
//
// Not yet tuned (no device in the session that wrote it): a decode step with long
// contexts would gain from splitting positions over more blocks (flash-decoding) and
// from one block per KV head serving its whole GQA group.
#include <cfloat>

#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kDimsPerLane = kMaxHeadDim / kWarpSize;

__global__ void attention_paged_kernel(DevKv kv, const float* __restrict__ q, int n_head, int n_head_kv,
                                       int head_dim, float scale, float* __restrict__ out) {
    const int t = blockIdx.x, h = blockIdx.y;  // tokens on x: no 65,535 limit
    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    const int kv_head = h / (n_head / n_head_kv);
    const int n_kv = kv.pos[t] + 1;
    const int32_t* table = kv.tables + kv.table_of[t];
    const float* qh = q + size_t(t) * n_head * head_dim + size_t(h) * head_dim;

    float qv[kDimsPerLane], acc[kDimsPerLane];
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + i * kWarpSize;
        qv[i] = d < head_dim ? qh[d] : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -FLT_MAX, l = 0.0f;
    for (int p = warp; p < n_kv; p += kWarps) {
        const size_t row = size_t(table[p / kv.block_size]) * kv.block_stride +
                           size_t(p % kv.block_size) * kv.row_stride + size_t(kv_head) * head_dim;
        const float* k = kv.base + row + kv.k_offset;
        const float* v = kv.base + row + kv.v_offset;
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) {
            const int d = lane + i * kWarpSize;
            if (d < head_dim) dot = fmaf(qv[i], k[d], dot);
        }
        const float s = warp_sum(dot) * scale;
        const float m_new = fmaxf(m, s);
        const float correction = expf(m - m_new), e = expf(s - m_new);
        l = l * correction + e;
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) {
            const int d = lane + i * kWarpSize;
            if (d < head_dim) acc[i] = acc[i] * correction + e * v[d];
        }
        m = m_new;
    }

    // Merge the warps: rescale each to the common max, then normalise once.
    __shared__ float warp_m[kWarps], warp_l[kWarps];
    __shared__ float warp_acc[kWarps][kMaxHeadDim];
    if (lane == 0) warp_m[warp] = m, warp_l[warp] = l;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + i * kWarpSize;
        if (d < head_dim) warp_acc[warp][d] = acc[i];
    }
    __syncthreads();
    float m_all = -FLT_MAX;
    for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, warp_m[w]);
    float l_all = 0.0f, weight[kWarps];
    for (int w = 0; w < kWarps; ++w) {
        // A warp that saw no position (n_kv < kWarps) has l = 0 and weighs nothing.
        weight[w] = warp_l[w] > 0.0f ? expf(warp_m[w] - m_all) : 0.0f;
        l_all += warp_l[w] * weight[w];
    }
    float* oh = out + size_t(t) * n_head * head_dim + size_t(h) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < kWarps; ++w) o += warp_acc[w][d] * weight[w];
        oh[d] = o / l_all;
    }
}

}  // namespace

void attention_paged(const DevKv& kv, const float* q, int n_tok, int n_head, int n_head_kv, int head_dim, float* out,
                     cudaStream_t s) {
    if (n_tok <= 0) return;
    const float scale = 1.0f / sqrtf(float(head_dim));
    attention_paged_kernel<<<dim3(unsigned(n_tok), unsigned(n_head)), kWarps * kWarpSize, 0, s>>>(
        kv, q, n_head, n_head_kv, head_dim, scale, out);
}

}  // namespace reprise::engine::cuda
