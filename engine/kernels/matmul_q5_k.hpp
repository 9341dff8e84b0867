#pragma once
// Q5_K weights x Q8_K-quantized activations (ggml_vec_dot_q5_K_q8_K).
#include "engine/ggml_types.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {
float vec_dot_q5_K_q8_K_ref(int n, const BlockQ5_K* x, const BlockQ8_K* y);
float vec_dot_q5_K_q8_K(int n, const BlockQ5_K* x, const BlockQ8_K* y);  // the widest SIMD path the CPU has
void matmul_q5_K(const BlockQ5_K* W, int rows, int cols, const BlockQ8_K* Xq, int n_tok, float* Y, ThreadPool* pool);
}
