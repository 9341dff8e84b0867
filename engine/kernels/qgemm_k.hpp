#pragma once
// Register-tiled K-quant x Q8_K matmuls (Q4_K, Q5_K, Q6_K), shared by matmul_q4_k.cpp,
// matmul_q5_k.cpp and matmul_q6_k.cpp; each file supplies a weight policy P:
//   P::Block                                 the weight block type (256 values)
//   P::Scales P::scales(const Block&)        per-block decode: d (and dmin), scales, mins
//   __m256i P::quants(const Block&, int j)   values 32j..32j+31 as unsigned bytes
//   __m256i P::scale16(const Scales&, int j) their scales, one int16 per maddubs lane
//   __m256  P::finish(acc, Scales, lanes, bsums, d_x)  the block's float update (below)
// The policy's functions are target("avx2,fma,f16c"), so they inline into both paths.
//
// Every path computes each (row, token) dot the same way, so AVX2, AVX512-VNNI, any
// tile shape and any thread split are bit-identical, and a batch prefill equals token
// by token decoding (engine/model.hpp, BATCH INVARIANCE):
//   per 256-block, 8 int32 lanes, lane k = sum over the 8 chunks j of 32 values of
//   scale16_j(k) * (the products of bytes 4k..4k+3 of chunk j): exact integers, the
//   same whether formed by maddubs + madd (AVX2) or maddubs + vpdpwssd (VNNI); then
//   converted to float and fused-multiply-added into 8 float accumulators with the
//   block's d_w * d_x (Q4_K/Q5_K: minus dmin_w * d_x times the 8 lanes of
//   mins . bsums; Q6_K: its -32 offset is folded into the integer lanes first),
//   summed once at the end (hsum_float_8).
// maddubs cannot saturate: weights are at most 63 and |Q8_K| at most 127 (2*63*127).
// The order differs from ggml's generic (scalar) dot, which sums lanes of 8 values;
// tests compare the two within a tolerance.
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>

#include "engine/ggml_types.hpp"
#include "engine/kernels/cpu.hpp"
#include "engine/kernels/simd_q8.hpp"
#include "engine/thread_pool.hpp"

#define REPRISE_KT_AVX2 __attribute__((target("avx2,fma,f16c")))
#define REPRISE_KT_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace reprise::engine::qgemm_k {

// Decode (one token) is memory bound: prefetch this far ahead in the row stream.
constexpr int kPrefetchBytes = 2048;

// One chunk's products into the lanes: AVX2 maddubs + madd + add; VNNI maddubs + vpdpwssd.
struct Avx2Mac {
    REPRISE_KT_AVX2 static inline __m256i mac(__m256i acc, __m256i w, __m256i y, __m256i s) {
        return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, y), s));
    }
};
struct VnniMac {
    REPRISE_KT_VNNI static inline __m256i mac(__m256i acc, __m256i w, __m256i y, __m256i s) {
        return _mm256_dpwssd_epi32(acc, _mm256_maddubs_epi16(w, y), s);
    }
};

#define REPRISE_KTILE_BODY                                                                                      \
    __m256 acc[RM][RN];                                                                                         \
    _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)                                                        \
        _Pragma("GCC unroll 8") for (int j = 0; j < RN; ++j) acc[i][j] = _mm256_setzero_ps();                   \
    for (int b = 0; b < nb; ++b) {                                                                              \
        if (RN == 1) /* decode: memory bound, stream the rows ahead */                                          \
            _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)                                                \
                _mm_prefetch(reinterpret_cast<const char*>(W + int64_t(i) * nb + b) + kPrefetchBytes, _MM_HINT_T0); \
        typename P::Scales sc[RM];                                                                              \
        _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i) sc[i] = P::scales(W[int64_t(i) * nb + b]);         \
        __m256i isum[RM][RN];                                                                                   \
        _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)                                                    \
            _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) isum[i][t] = _mm256_setzero_si256();           \
        _Pragma("GCC unroll 8") for (int j = 0; j < kQK_K / 32; ++j) {                                          \
            __m256i w[RM], s[RM];                                                                               \
            _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i) {                                              \
                w[i] = P::quants(W[int64_t(i) * nb + b], j);                                                    \
                s[i] = P::scale16(sc[i], j);                                                                    \
            }                                                                                                   \
            _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) {                                              \
                const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(X[int64_t(t0 + t) * nb + b].qs + 32 * j)); \
                _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i) isum[i][t] = M::mac(isum[i][t], w[i], y, s[i]); \
            }                                                                                                   \
        }                                                                                                       \
        _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) {                                                  \
            const BlockQ8_K& xb = X[int64_t(t0 + t) * nb + b];                                                  \
            const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums));               \
            _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i) acc[i][t] = P::finish(acc[i][t], sc[i], isum[i][t], bsums, xb.d); \
        }                                                                                                       \
    }                                                                                                           \
    _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)                                                        \
        _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) Y[int64_t(t0 + t) * ldy + i] = simd::hsum_float_8(acc[i][t]);

// RM weight rows (W: the first, rows nb blocks apart) x RN tokens from t0, all blocks.
template <class P, class M, int RM, int RN>
REPRISE_KT_AVX2 void tile_avx2(const typename P::Block* W, const BlockQ8_K* X, int nb, int t0, float* Y, int64_t ldy) {
    REPRISE_KTILE_BODY
}
template <class P, class M, int RM, int RN>
REPRISE_KT_VNNI void tile_vnni(const typename P::Block* W, const BlockQ8_K* X, int nb, int t0, float* Y, int64_t ldy) {
    REPRISE_KTILE_BODY
}
#undef REPRISE_KTILE_BODY

template <class P, bool kVnni, int RM, int RN>
inline void tile(const typename P::Block* W, const BlockQ8_K* X, int nb, int t0, float* Y, int64_t ldy) {
    if constexpr (kVnni)
        tile_vnni<P, VnniMac, RM, RN>(W, X, nb, t0, Y, ldy);
    else
        tile_avx2<P, Avx2Mac, RM, RN>(W, X, nb, t0, Y, ldy);
}

// Rows [r0, r1) x all tokens: RM x RN tiles, then narrower ones for the remainders.
template <class P, bool kVnni, int RM, int RN>
void run_rows(const typename P::Block* W, int rows, int nb, const BlockQ8_K* X, int n_tok, float* Y, int64_t r0, int64_t r1) {
    int64_t r = r0;
    for (; r + RM <= r1; r += RM) {
        const typename P::Block* w = W + r * nb;
        int t = 0;
        for (; t + RN <= n_tok; t += RN) tile<P, kVnni, RM, RN>(w, X, nb, t, Y + r, rows);
        for (; t < n_tok; ++t) tile<P, kVnni, RM, 1>(w, X, nb, t, Y + r, rows);
    }
    for (; r < r1; ++r) {
        const typename P::Block* w = W + r * nb;
        int t = 0;
        for (; t + RN <= n_tok; t += RN) tile<P, kVnni, 1, RN>(w, X, nb, t, Y + r, rows);
        for (; t < n_tok; ++t) tile<P, kVnni, 1, 1>(w, X, nb, t, Y + r, rows);
    }
}

// Decode-sized batches (n_tok < RN) walk one row at a time (as qgemm.cpp: several row
// streams at once were slower on the dev VM); prefill uses the RM x RN tiles.
template <class P, bool kVnni, int RM, int RN>
void run(const typename P::Block* W, int rows, int cols, const BlockQ8_K* X, int n_tok, float* Y, ThreadPool* pool) {
    const int nb = cols / kQK_K;
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
        if (n_tok < RN)
            run_rows<P, kVnni, 1, RN>(W, rows, nb, X, n_tok, Y, r0, r1);
        else
            run_rows<P, kVnni, RM, RN>(W, rows, nb, X, n_tok, Y, r0, r1);
    }, 16);
}

// The widest path the CPU has; false on Scalar (the caller runs the reference).
template <class P>
bool matmul(const typename P::Block* W, int rows, int cols, const BlockQ8_K* X, int n_tok, float* Y, ThreadPool* pool) {
    switch (kernels_isa()) {
        case KernelIsa::Avx512Vnni: run<P, true, 4, 4>(W, rows, cols, X, n_tok, Y, pool); return true;
        case KernelIsa::Avx2: run<P, false, 2, 4>(W, rows, cols, X, n_tok, Y, pool); return true;
        default: return false;
    }
}

// One (row, token) dot on the widest path: the 1 x 1 tile, so bit-identical to matmul.
template <class P>
bool vec_dot(int n, const typename P::Block* x, const BlockQ8_K* y, float* out) {
    switch (kernels_isa()) {
        case KernelIsa::Avx512Vnni: tile<P, true, 1, 1>(x, y, n / kQK_K, 0, out, 1); return true;
        case KernelIsa::Avx2: tile<P, false, 1, 1>(x, y, n / kQK_K, 0, out, 1); return true;
        default: return false;
    }
}

}  // namespace reprise::engine::qgemm_k
#endif
