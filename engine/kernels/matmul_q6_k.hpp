#pragma once
// Q6_K weights x Q8_K-quantized activations (ggml_vec_dot_q6_K_q8_K): 16 sub-blocks of 16 with int8 scales; x = (q - 32) * d * scale.
#include "engine/ggml_types.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {
float vec_dot_q6_K_q8_K_ref(int n, const BlockQ6_K* x, const BlockQ8_K* y);
float vec_dot_q6_K_q8_K(int n, const BlockQ6_K* x, const BlockQ8_K* y);  // the widest SIMD path the CPU has
void matmul_q6_K(const BlockQ6_K* W, int rows, int cols, const BlockQ8_K* Xq, int n_tok, float* Y, ThreadPool* pool);
}
