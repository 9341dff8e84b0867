#pragma once
// Q4_K weights x Q8_K-quantized activations (ggml_vec_dot_q4_K_q8_K): 8 sub-blocks of 32 with 6-bit scales and mins; the min term uses Q8_K's bsums.
#include "engine/ggml_types.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {
float vec_dot_q4_K_q8_K_ref(int n, const BlockQ4_K* x, const BlockQ8_K* y);
float vec_dot_q4_K_q8_K(int n, const BlockQ4_K* x, const BlockQ8_K* y);  // the widest SIMD path the CPU has
void matmul_q4_K(const BlockQ4_K* W, int rows, int cols, const BlockQ8_K* Xq, int n_tok, float* Y, ThreadPool* pool);
}
