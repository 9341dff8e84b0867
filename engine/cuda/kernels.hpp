#pragma once
// The CUDA kernels' launchers: a plain C-like API in the manner of llama.cpp's ggml-cuda
// and llm.c (device pointers in, a stream, no allocation, no synchronisation). One .cu
// file per kernel under kernels/. Each has a CPU reference in engine/kernels/ (named in
// its comment); tests/engine/cuda_test.cpp checks every one against it within
// the tolerance stated there.
//
// Batch invariance, as on the CPU (model.hpp): every kernel computes a token's row in
// an order that does not depend on how many other tokens are in the launch, so a
// sequence's output is the same alone, batched, preempted or speculating.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "engine/cuda/formats.hpp"

namespace reprise::engine::cuda {

// DevWeight, DevQ8 and the layouts per type: formats.hpp.

// The activation quantizers, each equal to its ggml reference bit for bit:
// kernels/quantize_q8_0.cu (quantize_row_q8_0_ref): qs, d. cols % 32 == 0.
void quantize_q8_0(const float* x, int n, int cols, DevQ8 out, cudaStream_t s);
// kernels/quantize_q8_1.cu (quantize_row_q8_1_ref): qs, d as Q8_0, and s. cols % 32 == 0.
void quantize_q8_1(const float* x, int n, int cols, DevQ8 out, cudaStream_t s);
// kernels/quantize_q8_K.cu (quantize_row_q8_K_ref): qs, d, bsums. cols % 256 == 0.
void quantize_q8_K(const float* x, int n, int cols, DevQ8 out, cudaStream_t s);

// Y[t][r] = W row r . X token t, for every quantized WeightType, X in the weights'
// activation format (act_format(w.type)).
// kernels/matvec_q.cu: n <= 8 tokens (decode), weights streamed once.
// kernels/matmul_q.cu: any n, tokens in tiles of 8 sharing each weight load.
// Both reduce each (row, token) in the same order (q_dot.cuh), so they agree bit for
// bit. Reference: vec_dot_q8_0_q8_0_ref, vec_dot_q4_0_q8_0_ref, vec_dot_q5_0_q8_0_ref,
// vec_dot_q4_1_q8_1_ref, vec_dot_q5_1_q8_1_ref, vec_dot_q4_K_q8_K_ref,
// vec_dot_q5_K_q8_K_ref, vec_dot_q6_K_q8_K_ref (engine/kernels/matmul_<type>.hpp).
constexpr int kMatvecMaxTokens = 8;
void matvec_q(const DevWeight& w, DevQ8 x, int n, float* y, cudaStream_t s);
void matmul_q(const DevWeight& w, DevQ8 x, int n, float* y, cudaStream_t s);
// kernels/matmul_f32.cu: F32 weights, any n (the reference model's path). cols % 4 == 0.
// Reference: dot_f32_ref.
void matmul_f32(const DevWeight& w, const float* x, int n, float* y, cudaStream_t s);

// kernels/embed.cu: out[t] = row ids[t] of the table, dequantized; rows with
// ids[t] < 0 are left alone (their hidden state was copied in). Reference:
// dequantize_row.
void embed_rows(const DevWeight& table, const int32_t* ids, int n, float* out, cudaStream_t s);

// kernels/rmsnorm.cu (reference rmsnorm_f32): y[i] = rmsnorm(x[rows ? rows[i] : i]) * w
// for i < n_rows; rows lets the output head normalise only the rows that want logits.
void rmsnorm(const float* x, const int32_t* rows, const float* w, float* y, int n_rows, int n, float eps,
             cudaStream_t s);

// kernels/rmsnorm_heads.cu (reference rmsnorm_f32 per head): each of the n_rows rows
// of x [n_rows][head_dim] normalised in place and scaled by w [head_dim] (qwen3's
// per-head Q/K norm: n_rows = tokens x heads). head_dim <= kMaxHeadDim.
void rmsnorm_heads(float* x, const float* w, int n_rows, int head_dim, float eps, cudaStream_t s);

// kernels/rope.cu (reference rope_f32, or rope_neox_f32 when neox): x [n_tok][n_heads *
// head_dim] rotated in place at positions pos[t], by the (cos, sin) table cs
// [position][n_rot/2] pairs. Pair j is (2j, 2j+1), or with neox (j, j + n_rot/2).
void rope(float* x, const int32_t* pos, int n_tok, int n_heads, int head_dim, int n_rot, const float* cs, bool neox,
          cudaStream_t s);

// kernels/add_bias.cu: x[t][i] += b[i] for n_tok rows of width (qwen2's Q/K/V biases).
void add_bias(float* x, const float* b, int n_tok, int width, cudaStream_t s);

// kernels/swiglu.cu (reference swiglu_f32): out = silu(gate) * up, n elements.
void swiglu(float* out, const float* gate, const float* up, size_t n, cudaStream_t s);
// kernels/add.cu: x += y, n elements (the residual adds).
void add_inplace(float* x, const float* y, size_t n, cudaStream_t s);

// The paged KV pool as attention and kv_write see it (kv_cache.hpp's layout): token
// t's sequence has its block table at tables + table_of[t]; position p is block
// table[p / block_size], row p % block_size; layer l's K rows start k_offset floats
// into a block and its V rows v_offset floats in.
struct DevKv {
    float* base = nullptr;
    const int32_t* tables = nullptr;
    const int32_t* table_of = nullptr;  // [n_tok]
    const int32_t* pos = nullptr;       // [n_tok]: the token's position; it attends to 0..pos
    int block_size = 0;
    size_t block_stride = 0, k_offset = 0, v_offset = 0;
    int row_stride = 0;                 // n_head_kv * head_dim
};

// kernels/kv_write.cu: stores k[t], v[t] ([n_tok][row_stride]) at the tokens' positions.
void kv_write(const DevKv& kv, const float* k, const float* v, int n_tok, cudaStream_t s);

// kernels/attention_paged.cu (reference attention_f32): causal GQA attention of every
// token's query heads over its sequence's positions 0..pos[t], reading K/V through the
// block tables. q, out: [n_tok][n_head * head_dim]. head_dim <= 256.
constexpr int kMaxHeadDim = 256;
void attention_paged(const DevKv& kv, const float* q, int n_tok, int n_head, int n_head_kv, int head_dim, float* out,
                     cudaStream_t s);

}  // namespace reprise::engine::cuda
