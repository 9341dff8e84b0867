#pragma once
// Q4_1 weights x Q8_1-quantized activations (ggml_vec_dot_q4_1_q8_1): x = q * d + m; the m term uses the activations' s = d * sum(qs).
#include "engine/ggml_types.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {
// Q8_1 activations (for Q4_1 and Q5_1 weights): bit-identical to quantize_row_q8_1_ref,
// with AVX2 when available (quantize_activations uses it).
void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t k);
float vec_dot_q4_1_q8_1_ref(int n, const BlockQ4_1* x, const BlockQ8_1* y);
float vec_dot_q4_1_q8_1(int n, const BlockQ4_1* x, const BlockQ8_1* y);  // the widest SIMD path the CPU has
void matmul_q4_1(const BlockQ4_1* W, int rows, int cols, const BlockQ8_1* Xq, int n_tok, float* Y, ThreadPool* pool);
}
