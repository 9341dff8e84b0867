#pragma once
// Register-tiled matmuls behind matmul_q5_0 / matmul_q4_1 / matmul_q5_1 (SIMD paths only;
// the callers keep the scalar reference). Y[t * rows + r] = dot(W row r, Xq token t).
//
// Each (row, token) dot is computed exactly as the one-token vec_dot_* SIMD path: per
// 32-block, 8 exact int32 lanes (lane k = sum of the products of bytes 4k..4k+3; the
// instruction sequence does not matter, integers are exact) converted to float and
// fused-multiply-added with d_w * d_x into 8 float accumulators; for Q4_1 / Q5_1 the
// minimum's term m_w * s_x is fused-multiply-added, block by block, into one float; the
// result is hsum(accumulators) (+ that float). Every tile shape, thread split and ISA
// (AVX2 maddubs, AVX512-VNNI vpdpbusd) therefore gives the same bits, and a prefill
// equals token-by-token decoding.
#include "engine/ggml_types.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {
// Return false when no SIMD path is available (the caller then runs the reference).
bool qgemm_q5_0(const BlockQ5_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool);
bool qgemm_q4_1(const BlockQ4_1* W, int rows, int cols, const BlockQ8_1* Xq, int n_tok, float* Y, ThreadPool* pool);
bool qgemm_q5_1(const BlockQ5_1* W, int rows, int cols, const BlockQ8_1* Xq, int n_tok, float* Y, ThreadPool* pool);
}  // namespace reprise::engine
