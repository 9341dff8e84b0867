#pragma once
// Q8_0 and Q4_0 weights repacked 16 rows at a time (as llama.cpp's REPACK does 8), and
// the one matmul kernel over them that serves prefill and decode alike.
//
// Layout: for each group of 16 rows (the last one padded with zero rows) and each
// 32-block b, one "group block": the 16 fp16 scales, then the quants as 64-byte chunks,
// chunk k holding bytes 4k..4k+3 of each of the 16 rows (row j at 4j). Q8_0 has 8
// chunks (544 bytes), Q4_0 4 (288 bytes: its 16 nibble bytes, each byte's low nibble
// element 4k+i and high nibble element 16+4k+i). The bytes are the rows' own, only
// moved: the size is that of the plain rows, rounded up to 16 rows.
//
// Why: one vpdpbusd then multiplies 4 weight bytes of 16 rows by the same 4 activation
// bytes of one token (broadcast), so after a block each int32 lane holds the exact dot
// of one (row, block) with the token, and the float work (convert, scale, add) is one
// 16-lane instruction each per 16 (row, token) pairs, instead of per pair.
//
// Each (row, token) result is exactly vec_dot_q8_0_q8_0_ref / vec_dot_q4_0_q8_0_ref:
// sum over blocks in order of float(isum) * (d_w * d_x), with no fused multiply-add
// (this file is compiled with -ffp-contract=off). The integer block sums are exact on
// every path, so the scalar, AVX2 and AVX512-VNNI paths, any batch size, tile and
// thread split give bit-identical results (batch invariance).
#include <cstddef>
#include <cstdint>

#include "engine/ggml_types.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {

constexpr int kX16Rows = 16;

bool x16_supports(GgmlType t);                      // Q8_0, Q4_0
size_t x16_group_block_bytes(GgmlType t);           // 544 (Q8_0), 288 (Q4_0)
size_t x16_bytes(GgmlType t, int rows, int cols);   // the packed size of a rows x cols matrix
// W: rows x cols in plain ggml blocks (rows contiguous) -> out [x16_bytes].
void x16_pack(GgmlType t, const void* W, int rows, int cols, uint8_t* out);
// Row `row` of a packed matrix back to plain ggml blocks (cols / 32 of them).
void x16_unpack_row(GgmlType t, const uint8_t* packed, int cols, int row, void* blocks);
// Y[t * rows + r] = dot(W row r, Xq token t), Xq: n_tok rows of Q8_0 activations.
void x16_matmul(GgmlType t, const uint8_t* packed, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y,
                ThreadPool* pool);

// Several products over the same activations (wq/wk/wv, gate/up), each matrix of type t
// and cols columns: one hand-off to the pool for all of them, which matters at decode
// where a hand-off costs about as much as a small matrix.
struct X16Product {
    const uint8_t* packed;
    int rows;
    float* Y;  // [n_tok][rows]
};
void x16_matmul_many(GgmlType t, const X16Product* products, int n_products, int cols, const BlockQ8_0* Xq, int n_tok,
                     ThreadPool* pool);

}  // namespace reprise::engine
