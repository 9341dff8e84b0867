// Rotary position embedding, rotating by a (cos, sin) table the host computes with
// rope_cos_sin: the angles are the CPU's to the bit, so the only difference left is the
// rounding of the 2x2 rotation itself. Pair j of a head is (2j, 2j+1) in GGUF's llama
// convention (rope_f32), (j, j + n_rot/2) in NeoX's (rope_neox_f32: qwen2, qwen3).
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/kernels/common.cuh"

namespace reprise::engine::cuda {
namespace {

__global__ void rope_kernel(float* __restrict__ x, const int32_t* __restrict__ pos, int n_heads, int head_dim,
                            int n_rot, const float* __restrict__ cs, bool neox) {
    const int t = blockIdx.x;  // tokens on x: no 65,535 limit
    const int half = n_rot / 2;
    const int k = blockIdx.y * blockDim.x + threadIdx.x;  // (head, pair)
    if (k >= n_heads * half) return;
    const int h = k / half, j = k % half;
    const float* a = cs + (size_t(pos[t]) * half + j) * 2;
    const float c = a[0], s = a[1];
    float* head = x + size_t(t) * n_heads * head_dim + size_t(h) * head_dim;
    float* v0 = neox ? head + j : head + 2 * j;
    float* v1 = neox ? head + j + half : head + 2 * j + 1;
    const float x0 = *v0, x1 = *v1;
    // __fmul_rn keeps each product rounded on its own, as the CPU's a * c - b * s.
    *v0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
    *v1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
}

}  // namespace

void rope(float* x, const int32_t* pos, int n_tok, int n_heads, int head_dim, int n_rot, const float* cs, bool neox,
          cudaStream_t s) {
    if (n_tok <= 0) return;
    constexpr unsigned kThreads = 128;
    const size_t pairs = size_t(n_heads) * (n_rot / 2);
    rope_kernel<<<dim3(unsigned(n_tok), grid_for(pairs, kThreads)), kThreads, 0, s>>>(x, pos, n_heads, head_dim, n_rot, cs, neox);
}

}  // namespace reprise::engine::cuda
