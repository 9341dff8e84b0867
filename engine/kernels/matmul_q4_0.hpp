#pragma once
// Q4_0 weights x Q8_0-quantized activations (ggml_vec_dot_q4_0_q8_0): nibble j of a
// block is element j (low) and j + 16 (high), value (q - 8) * d.
#include "engine/ggml_types.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {
float vec_dot_q4_0_q8_0_ref(int n, const BlockQ4_0* x, const BlockQ8_0* y);
float vec_dot_q4_0_q8_0(int n, const BlockQ4_0* x, const BlockQ8_0* y);  // AVX2 when available
void matmul_q4_0(const BlockQ4_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool);
}
