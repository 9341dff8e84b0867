#pragma once
// Q5_0 weights x Q8_0-quantized activations (ggml_vec_dot_q5_0_q8_0): 4 low bits in qs (as Q4_0), the 5th in qh; x = (q - 16) * d.
#include "engine/ggml_types.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {
float vec_dot_q5_0_q8_0_ref(int n, const BlockQ5_0* x, const BlockQ8_0* y);
float vec_dot_q5_0_q8_0(int n, const BlockQ5_0* x, const BlockQ8_0* y);  // the widest SIMD path the CPU has
void matmul_q5_0(const BlockQ5_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool);
}
