#pragma once
// Register-tiled quantized matmuls behind matmul_q8_0 / matmul_q4_0 (SIMD paths only;
// the callers keep the scalar fallback). Y[t * rows + r] = dot(W row r, Xq token t).
//
// Every path computes each (row, token) dot the same way as vec_dot_*_avx2: per 32-block
// the 8 int32 lanes (lane k = exact sum of the products of bytes 4k..4k+3), converted to
// float and fused-multiply-added with d_w * d_x into 8 float accumulators, which are
// summed once at the end (hsum_float_8). The integer lanes are exact whatever the
// instruction sequence (maddubs+madd, or vpdpbusd with an offset correction), so AVX2,
// AVX512-VNNI, any tile shape and any thread split give bit-identical results, and a
// batch prefill equals token-by-token decoding.
#include "engine/ggml_types.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {
// Return false when no SIMD path is available (the caller then runs the reference).
bool qgemm_q8_0(const BlockQ8_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool);
bool qgemm_q4_0(const BlockQ4_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool);
}  // namespace reprise::engine
