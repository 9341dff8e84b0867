#pragma once
// Q8_0 weights x activations quantized to Q8_0 per 32-block, as llama.cpp does
// (ggml_vec_dot_q8_0_q8_0): integer dot per block, scaled by d_w * d_x in float.
// cols must be a multiple of 32.
#include "engine/ggml_types.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {
// X [n_tok][cols] -> Xq [n_tok][cols/32] blocks (ggml's reference quantizer).
void quantize_activations_q8_0(const float* X, int n_tok, int cols, BlockQ8_0* Xq);
float vec_dot_q8_0_q8_0_ref(int n, const BlockQ8_0* x, const BlockQ8_0* y);
float vec_dot_q8_0_q8_0(int n, const BlockQ8_0* x, const BlockQ8_0* y);  // AVX2 when available
void matmul_q8_0(const BlockQ8_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool);
}
