#pragma once
// Register-tiled K-quant x Q8_K matmuls (Q4_K, Q5_K, Q6_K), shared by matmul_q4_k.cpp,
// matmul_q5_k.cpp and matmul_q6_k.cpp; each file supplies a weight policy P:
//   P::Block                                 the weight block type (256 values)
//   P::kHasMin                               Q4_K/Q5_K (mins); Q6_K has the -32 offset
//   P::Scales P::scales(const Block&)        per-block decode: d, u (dmin * mins) or
//                                            m16 (Q6_K's scales), the chunk scales
//   __m256i P::quants(const Block&, int j)   values 32j..32j+31 as unsigned bytes
//   __m256i P::scale16(const Scales&, int j) their scales, one int16 per maddubs lane
// The policy's functions are target("avx2,fma,f16c"), so they inline into both paths.
//
// Every path computes each (row, token) dot the same way, so AVX2, AVX512-VNNI, any
// tile shape and any thread split are bit-identical, and a batch prefill equals token
// by token decoding (engine/model.hpp, BATCH INVARIANCE):
//   per 256-block, 8 int32 lanes, lane k = sum over the 8 chunks j of 32 values of
//   scale16_j(k) * (the products of bytes 4k..4k+3 of chunk j): exact integers, the
//   same whether formed by maddubs + madd (AVX2), maddubs + vpdpwssd (VNNI) or the
//   512-bit VNNI prefill tile (two chunks per register, halves added at the end); then
//   converted to float and fused-multiply-added into 8 float accumulators with the
//   block's d_w * d_x, then the mins term (finish, below), summed once at the end
//   (hsum_float_8).
// maddubs cannot saturate: weights are at most 63 and |Q8_K| at most 127 (2*63*127);
// the lanes stay below 2^31 (Q6_K: 8 chunks * 128 * 4*63*127 < 2^25).
// The order differs from ggml's generic (scalar) dot, which sums lanes of 8 values;
// tests compare the two within a tolerance.
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "engine/ggml_types.hpp"
#include "engine/kernels/cpu.hpp"
#include "engine/kernels/simd_q8.hpp"
#include "engine/thread_pool.hpp"

#define REPRISE_KT_AVX2 __attribute__((target("avx2,fma,f16c")))
#define REPRISE_KT_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace reprise::engine::qgemm_k {

// Decode (one token) is memory bound: prefetch this far ahead in the row stream.
constexpr int kPrefetchBytes = 2048;

// Keeps v in a register at this point: stops GCC from re-associating a tile's integer
// sums into trees whose partial products spill out of the 16 ymm registers (AVX2).
REPRISE_KT_AVX2 inline __m256i pin(__m256i v) {
    __asm__("" : "+x"(v));
    return v;
}

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

// The block's float update, shared by every path (so all round alike):
//   Q4_K/Q5_K: acc += (d_w*d_x) * lanes, then acc -= u * v with u = dmin_w * mins (8
//   floats, one per 32-chunk, from the weights) and v = d_x * (bsums 2k + 2k+1) (8
//   floats from the activations): the min term as one fused multiply-add per pair.
//   Q6_K: the -32 offset, 32 * (scales . bsums), leaves the integer lanes first (exact).
template <class P>
REPRISE_KT_AVX2 inline __m256 finish(__m256 acc, float ddy, __m256i lanes, __m256 u, __m256 v, __m256i m16, __m256i bsums) {
    if constexpr (P::kHasMin) {
        (void)m16, (void)bsums;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(ddy), _mm256_cvtepi32_ps(lanes), acc);
        return _mm256_fnmadd_ps(u, v, acc);
    } else {
        (void)u, (void)v;
        lanes = _mm256_sub_epi32(lanes, _mm256_slli_epi32(_mm256_madd_epi16(bsums, m16), 5));
        return _mm256_fmadd_ps(_mm256_set1_ps(ddy), _mm256_cvtepi32_ps(lanes), acc);
    }
}
// v for one activation block: d_x * (the 8 sums of 32 values, from the 16 bsums).
REPRISE_KT_AVX2 inline __m256 act_min_factor(const BlockQ8_K& xb) {
    const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums));
    return _mm256_mul_ps(_mm256_set1_ps(xb.d), _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, _mm256_set1_epi16(1))));
}

// A weight block unpacked for the prefill tiles: the 256 values as unsigned bytes, the
// scale of each chunk as 16 int16 lanes (vpdpwssd / madd's operand as is), m16 and the
// float scales. A row group is packed once and reused by every token tile, so the
// nibble unpacking and scale decoding leave the inner loop.
struct alignas(32) PackedBlock {
    uint8_t q[kQK_K];
    int16_t s[kQK_K / 32][16];
    int16_t m16[16];  // Q6_K: the scales per bsum
    float u[8];       // Q4_K/Q5_K: dmin * the mins
    float d;
};

template <class P>
REPRISE_KT_AVX2 void pack_block(const typename P::Block& b, PackedBlock* o) {
    const typename P::Scales sc = P::scales(b);
    for (int j = 0; j < kQK_K / 32; ++j) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(o->q + 32 * j), P::quants(b, j));
        _mm256_store_si256(reinterpret_cast<__m256i*>(o->s[j]), P::scale16(sc, j));
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(o->m16), sc.m16);
    _mm256_store_ps(o->u, sc.u);
    o->d = sc.d;
}

// Direct tile: RM weight rows (W: the first, rows nb blocks apart) x RN tokens from t0.
#define REPRISE_KTILE_DIRECT                                                                                    \
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
            const __m256 v = P::kHasMin ? act_min_factor(xb) : _mm256_setzero_ps();                             \
            _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)                                                \
                acc[i][t] = finish<P>(acc[i][t], sc[i].d * xb.d, isum[i][t], sc[i].u, v, sc[i].m16, bsums);     \
        }                                                                                                       \
    }                                                                                                           \
    _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)                                                        \
        _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) Y[int64_t(t0 + t) * ldy + i] = simd::hsum_float_8(acc[i][t]);

// Packed tile: RM rows packed as PB[b * RM + i] x RN tokens from t0.
#define REPRISE_KTILE_PACKED                                                                                    \
    __m256 acc[RM][RN];                                                                                         \
    _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)                                                        \
        _Pragma("GCC unroll 8") for (int j = 0; j < RN; ++j) acc[i][j] = _mm256_setzero_ps();                   \
    for (int b = 0; b < nb; ++b) {                                                                              \
        const PackedBlock* pb = PB + int64_t(b) * RM;                                                           \
        __m256i isum[RM][RN];                                                                                   \
        _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)                                                    \
            _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) isum[i][t] = _mm256_setzero_si256();           \
        _Pragma("GCC unroll 8") for (int j = 0; j < kQK_K / 32; ++j) {                                          \
            __m256i y[RN];                                                                                      \
            _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t)                                                \
                y[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(X[int64_t(t0 + t) * nb + b].qs + 32 * j)); \
            _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i) {                                              \
                const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(pb[i].q + 32 * j));        \
                const __m256i s = _mm256_load_si256(reinterpret_cast<const __m256i*>(pb[i].s[j]));              \
                _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) isum[i][t] = pin(M::mac(isum[i][t], w, y[t], s)); \
            }                                                                                                   \
        }                                                                                                       \
        _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) {                                                  \
            const BlockQ8_K& xb = X[int64_t(t0 + t) * nb + b];                                                  \
            const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums));               \
            const __m256 v = P::kHasMin ? act_min_factor(xb) : _mm256_setzero_ps();                             \
            _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)                                                \
                acc[i][t] = finish<P>(acc[i][t], pb[i].d * xb.d, isum[i][t], _mm256_load_ps(pb[i].u), v,       \
                                      _mm256_load_si256(reinterpret_cast<const __m256i*>(pb[i].m16)), bsums);   \
        }                                                                                                       \
    }                                                                                                           \
    _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)                                                        \
        _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) Y[int64_t(t0 + t) * ldy + i] = simd::hsum_float_8(acc[i][t]);

// AVX512-VNNI packed tile on 512-bit registers: two chunks per instruction. The 16
// int32 lanes hold chunk 2jj in 0..7 and 2jj+1 in 8..15; adding the halves at the end of
// the block gives the same exact 8 lanes as the 256-bit paths, so the results match.
// The two 256-bit halves added (GCC 12's 512-bit extract intrinsics warn spuriously
// about an uninitialized operand, so the halves are taken as vector-extension shuffles).
REPRISE_KT_VNNI inline __m256i fold_halves(__m512i x) {
    using v16i = int __attribute__((vector_size(64)));
    using v8i = int __attribute__((vector_size(32)));
    const v16i v = reinterpret_cast<v16i>(x);
    const v8i lo = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
    const v8i hi = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    return reinterpret_cast<__m256i>(lo + hi);
}

template <class P, int RM, int RN>
REPRISE_KT_VNNI void packed_vnni512(const PackedBlock* PB, const BlockQ8_K* X, int nb, int t0, float* Y, int64_t ldy) {
    __m256 acc[RM][RN];
    _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)
        _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) acc[i][t] = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
        const PackedBlock* pb = PB + int64_t(b) * RM;
        __m512i isum[RM][RN];
        _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)
            _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) isum[i][t] = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int jj = 0; jj < kQK_K / 64; ++jj) {
            __m512i y[RN];
            _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) y[t] = _mm512_loadu_si512(X[int64_t(t0 + t) * nb + b].qs + 64 * jj);
            _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i) {
                const __m512i w = _mm512_loadu_si512(pb[i].q + 64 * jj);
                const __m512i sc = _mm512_loadu_si512(pb[i].s[2 * jj]);
                _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t)
                    isum[i][t] = _mm512_dpwssd_epi32(isum[i][t], _mm512_maddubs_epi16(w, y[t]), sc);
            }
        }
        _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) {
            const BlockQ8_K& xb = X[int64_t(t0 + t) * nb + b];
            const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums));
            const __m256 v = P::kHasMin ? act_min_factor(xb) : _mm256_setzero_ps();
            _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i) {
                const __m256i lanes = fold_halves(isum[i][t]);
                acc[i][t] = finish<P>(acc[i][t], pb[i].d * xb.d, lanes, _mm256_load_ps(pb[i].u), v,
                                      _mm256_load_si256(reinterpret_cast<const __m256i*>(pb[i].m16)), bsums);
            }
        }
    }
    _Pragma("GCC unroll 8") for (int i = 0; i < RM; ++i)
        _Pragma("GCC unroll 8") for (int t = 0; t < RN; ++t) Y[int64_t(t0 + t) * ldy + i] = simd::hsum_float_8(acc[i][t]);
}

template <class P, class M, int RM, int RN>
REPRISE_KT_AVX2 void tile_avx2(const typename P::Block* W, const BlockQ8_K* X, int nb, int t0, float* Y, int64_t ldy) {
    REPRISE_KTILE_DIRECT
}
template <class P, class M, int RM, int RN>
REPRISE_KT_VNNI void tile_vnni(const typename P::Block* W, const BlockQ8_K* X, int nb, int t0, float* Y, int64_t ldy) {
    REPRISE_KTILE_DIRECT
}
template <class P, class M, int RM, int RN>
REPRISE_KT_AVX2 void packed_avx2(const PackedBlock* PB, const BlockQ8_K* X, int nb, int t0, float* Y, int64_t ldy) {
    REPRISE_KTILE_PACKED
}
template <class P, class M, int RM, int RN>
REPRISE_KT_VNNI void packed_vnni(const PackedBlock* PB, const BlockQ8_K* X, int nb, int t0, float* Y, int64_t ldy) {
    REPRISE_KTILE_PACKED
}
#undef REPRISE_KTILE_DIRECT
#undef REPRISE_KTILE_PACKED

template <class P, bool kVnni, int RM, int RN>
inline void tile(const typename P::Block* W, const BlockQ8_K* X, int nb, int t0, float* Y, int64_t ldy) {
    if constexpr (kVnni)
        tile_vnni<P, VnniMac, RM, RN>(W, X, nb, t0, Y, ldy);
    else
        tile_avx2<P, Avx2Mac, RM, RN>(W, X, nb, t0, Y, ldy);
}
template <class P, bool kVnni, int RM, int RN>
inline void packed_tile(const PackedBlock* PB, const BlockQ8_K* X, int nb, int t0, float* Y, int64_t ldy) {
    if constexpr (kVnni)
        packed_vnni512<P, RM, RN>(PB, X, nb, t0, Y, ldy);
    else
        packed_avx2<P, Avx2Mac, RM, RN>(PB, X, nb, t0, Y, ldy);
}

// The last n (< RN) tokens from t of RM rows: one tile of that width, so the rows are
// read once (small verify batches of speculative decoding, prefill remainders).
template <class P, bool kVnni, int RM, int RN>
void tail_tokens(const typename P::Block* W, const BlockQ8_K* X, int nb, int t, int n, float* Y, int64_t ldy) {
    if constexpr (RN > 1) {
        if (n == RN - 1) return tile<P, kVnni, RM, RN - 1>(W, X, nb, t, Y, ldy);
        if (n < RN - 1) return tail_tokens<P, kVnni, RM, RN - 1>(W, X, nb, t, n, Y, ldy);
    }
    (void)W, (void)X, (void)nb, (void)t, (void)n, (void)Y, (void)ldy;
}

// Rows [r0, r1) x all tokens. Prefill (n_tok >= RN): each group of RM rows is packed
// once (thread-local buffer), then RM x RN packed tiles walk the tokens; the token
// remainder and the last rows use direct tiles, which compute the same values.
template <class P, bool kVnni, int RM, int RN>
void run_rows(const typename P::Block* W, int rows, int nb, const BlockQ8_K* X, int n_tok, float* Y, int64_t r0, int64_t r1) {
    int64_t r = r0;
    const int t_full = n_tok / RN * RN;
    if (n_tok >= RN) {
        thread_local std::vector<PackedBlock> buf;
        buf.resize(size_t(nb) * RM);
        for (; r + RM <= r1; r += RM) {
            const typename P::Block* w = W + r * nb;
            for (int b = 0; b < nb; ++b)
                for (int i = 0; i < RM; ++i) pack_block<P>(w[int64_t(i) * nb + b], &buf[size_t(b) * RM + size_t(i)]);
            for (int t = 0; t < t_full; t += RN) packed_tile<P, kVnni, RM, RN>(buf.data(), X, nb, t, Y + r, rows);
            if (t_full < n_tok) tail_tokens<P, kVnni, RM, RN>(w, X, nb, t_full, n_tok - t_full, Y + r, rows);
        }
    }
    for (; r < r1; ++r) {
        const typename P::Block* w = W + r * nb;
        for (int t = 0; t < t_full; t += RN) tile<P, kVnni, 1, RN>(w, X, nb, t, Y + r, rows);
        if (t_full < n_tok) tail_tokens<P, kVnni, 1, RN>(w, X, nb, t_full, n_tok - t_full, Y + r, rows);
    }
}

// Decode-sized batches (n_tok < RN) walk one row at a time (as the former qgemm.cpp: several row
// streams at once were slower on the dev VM); prefill uses the RM x RN tiles.
template <class P, bool kVnni, int RM, int RN>
void run(const typename P::Block* W, int rows, int cols, const BlockQ8_K* X, int n_tok, float* Y, ThreadPool* pool) {
    const int nb = cols / kQK_K;
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) { run_rows<P, kVnni, RM, RN>(W, rows, nb, X, n_tok, Y, r0, r1); }, 16);
}

// The widest path the CPU has; false on Scalar (the caller runs the reference). Tile
// shapes by A/B on the dev VM (Zen 4, 1 thread, 2048 x 768 x 128 tokens, Q4_K): VNNI
// 4 x 4 on 512-bit registers (4x4, 6x4, 4x5 within noise, 134 GMAC/s); AVX2 (16 ymm
// registers) 4 x 2 with the sums pinned (pin): Q4_K 78, Q6_K 80 GMAC/s (4 x 3: 75 / 80,
// 3 x 3, 5 x 2, 2 x 4, 6 x 2 within 3%; 4 x 3 unpinned: 68 / 63).
template <class P>
bool matmul(const typename P::Block* W, int rows, int cols, const BlockQ8_K* X, int n_tok, float* Y, ThreadPool* pool) {
    switch (kernels_isa()) {
        case KernelIsa::Avx512Vnni: run<P, true, 4, 4>(W, rows, cols, X, n_tok, Y, pool); return true;
        case KernelIsa::Avx2: run<P, false, 4, 2>(W, rows, cols, X, n_tok, Y, pool); return true;
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
