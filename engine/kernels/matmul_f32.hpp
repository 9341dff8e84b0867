#pragma once
// F32 matrix x activations: Y[t][r] = sum_c W[r][c] * X[t][c] for n_tok tokens. W is
// row-major [rows][cols] (a GGUF tensor with ne = {cols, rows}). Rows are split over
// the pool's threads; each weight row is reused across all tokens of a batch while it
// is in cache, which is what makes batched prefill faster than token by token.
// Every (row, token) dot product is computed the same way whatever n_tok is, so batch
// and single-token results are bit-identical.
#include "engine/thread_pool.hpp"

namespace reprise::engine {
float dot_f32_ref(const float* a, const float* b, int n);  // scalar, sequential order
float dot_f32(const float* a, const float* b, int n);      // AVX2 when available
void matmul_f32(const float* W, int rows, int cols, const float* X, int n_tok, float* Y, ThreadPool* pool);
}
