#include "engine/kernels/qgemm_legacy.hpp"

#include <cstring>
#include <vector>

#include "engine/kernels/cpu.hpp"
#include "engine/kernels/simd_legacy.hpp"

namespace reprise::engine {

#if defined(__x86_64__)
namespace {

#define REPRISE_T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define REPRISE_T_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

// The 5-bit values with AVX512BW/VL: qh is the byte mask of the elements that get 16:
// one masked add instead of bytes_from_bits_32's shuffle, or, compare and and, and two
// constants fewer held in the 4x4 tile's registers (same bytes, so same results).
REPRISE_T_VNNI inline __m256i q5_vnni(const uint8_t* qs, const uint8_t* qh) {
    uint32_t bits;
    std::memcpy(&bits, qh, sizeof bits);
    const __m256i nib = simd::bytes_from_nibbles_32(qs);
    return _mm256_mask_add_epi8(nib, __mmask32(bits), nib, _mm256_set1_epi8(16));
}

// ---- weight policies: the block's values as 32 unsigned bytes, and what the activations
// must supply. kOffset: the stored value is q - kOffset (folded into the activations'
// correction lanes); kMin: the block has a minimum m (value q * d + m), multiplied by
// the activations' s = d_x * sum(q_x) (Q8_1).
struct Q5_0W {
    using Block = BlockQ5_0;
    using ActBlock = BlockQ8_0;
    static constexpr int kOffset = 16;
    static constexpr bool kMin = false;
    REPRISE_T_AVX2 static inline __m256i unpack(const Block& b) { return simd::bytes_from_q5(b.qs, b.qh); }
    REPRISE_T_VNNI static inline __m256i unpack_vnni(const Block& b) { return q5_vnni(b.qs, b.qh); }
};
struct Q4_1W {
    using Block = BlockQ4_1;
    using ActBlock = BlockQ8_1;
    static constexpr int kOffset = 0;
    static constexpr bool kMin = true;
    REPRISE_T_AVX2 static inline __m256i unpack(const Block& b) { return simd::bytes_from_nibbles_32(b.qs); }
    REPRISE_T_VNNI static inline __m256i unpack_vnni(const Block& b) { return simd::bytes_from_nibbles_32(b.qs); }
};
struct Q5_1W {
    using Block = BlockQ5_1;
    using ActBlock = BlockQ8_1;
    static constexpr int kOffset = 0;
    static constexpr bool kMin = true;
    REPRISE_T_AVX2 static inline __m256i unpack(const Block& b) { return simd::bytes_from_q5(b.qs, b.qh); }
    REPRISE_T_VNNI static inline __m256i unpack_vnni(const Block& b) { return q5_vnni(b.qs, b.qh); }
};

// Activations prepared once per call, shared by all threads.
template <class ActBlock>
struct Act {
    const ActBlock* q;
    const float* d;        // [n_tok * nb] block scales
    const int32_t* corr;   // [n_tok * nb * 8] -offset * (lane sums of q), or null
    const float* s_t;      // [nb * n_tok] (transposed: a tile's tokens are contiguous), or null
    int nb, n_tok;
};

struct ActBuffers {
    std::vector<float> d, s_t;
    std::vector<int32_t> corr;
};

template <class P>
Act<typename P::ActBlock> prepare(const typename P::ActBlock* Xq, int n_tok, int nb, ActBuffers& buf) {
    const size_t n = size_t(n_tok) * size_t(nb);
    buf.d.resize(n);
    for (size_t k = 0; k < n; ++k) buf.d[k] = fp16_to_fp32(Xq[k].d);
    if constexpr (P::kOffset != 0) {
        buf.corr.resize(n * 8);
        for (size_t k = 0; k < n; ++k)
            for (int l = 0; l < 8; ++l) {
                const int8_t* q = Xq[k].qs + 4 * l;
                buf.corr[k * 8 + size_t(l)] = -P::kOffset * (int(q[0]) + int(q[1]) + int(q[2]) + int(q[3]));
            }
    }
    if constexpr (P::kMin) {
        buf.s_t.resize(n);
        for (int t = 0; t < n_tok; ++t)
            for (int b = 0; b < nb; ++b) buf.s_t[size_t(b) * size_t(n_tok) + size_t(t)] = fp16_to_fp32(Xq[size_t(t) * size_t(nb) + size_t(b)].s);
    }
    return {Xq, buf.d.data(), P::kOffset != 0 ? buf.corr.data() : nullptr, P::kMin ? buf.s_t.data() : nullptr, nb, n_tok};
}

// Integer lanes of one (weight block, token block): exact, so both give the same bits.
struct LanesAvx2 {
    REPRISE_T_AVX2 static inline __m256i run(__m256i w, __m256i y, const int32_t* corr) {
        const __m256i l = simd::lanes_u8_s8(w, y);
        return corr ? _mm256_add_epi32(l, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr))) : l;
    }
};
struct LanesVnni {
    REPRISE_T_VNNI static inline __m256i run(__m256i w, __m256i y, const int32_t* corr) {
        const __m256i c = corr ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr)) : _mm256_setzero_si256();
        return _mm256_dpbusd_epi32(c, w, y);
    }
};

constexpr int kPrefetchBytes = 2048;  // decode streams the weight rows (as the former Q8_0/Q4_0 qgemm.cpp did)

// RM weight rows x RN tokens (RN <= 4) over all blocks of the row. The minimum's terms
// of row i for the RN tokens share one __m128 (lane j = token j): each lane is its own
// fused-multiply-add chain in block order, as the one-token dot's scalar one.
#define REPRISE_LEGACY_TILE_BODY(LANES, UNPACK)                                                                           \
    static_assert(RN >= 1 && RN <= 4);                                                                            \
    __m256 acc[RM][RN];                                                                                           \
    __m128 msum[RM];                                                                                              \
    _Pragma("GCC unroll 4") for (int i = 0; i < RM; ++i) {                                                        \
        msum[i] = _mm_setzero_ps();                                                                               \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; ++j) acc[i][j] = _mm256_setzero_ps();                     \
    }                                                                                                             \
    const int nb = A.nb;                                                                                          \
    for (int b = 0; b < nb; ++b) {                                                                                \
        if (RN == 1) _mm_prefetch(reinterpret_cast<const char*>(W + b) + kPrefetchBytes, _MM_HINT_T0);            \
        __m256i w[RM];                                                                                            \
        __m256 dw[RM];                                                                                            \
        _Pragma("GCC unroll 4") for (int i = 0; i < RM; ++i) {                                                    \
            const typename P::Block& blk = W[int64_t(i) * nb + b];                                                \
            w[i] = P::UNPACK(blk);                                                                                \
            dw[i] = _mm256_cvtph_ps(_mm_set1_epi16(short(blk.d)));                                                \
        }                                                                                                         \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; ++j) {                                                    \
            const int64_t k = int64_t(t0 + j) * nb + b;                                                           \
            const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(A.q[k].qs));                   \
            const __m256 dy = _mm256_broadcast_ss(A.d + k);                                                       \
            const int32_t* corr = P::kOffset != 0 ? A.corr + k * 8 : nullptr;                                     \
            _Pragma("GCC unroll 4") for (int i = 0; i < RM; ++i) {                                                \
                const __m256 l = _mm256_cvtepi32_ps(LANES::run(w[i], y, corr));                                   \
                acc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(dw[i], dy), l, acc[i][j]);                              \
            }                                                                                                     \
        }                                                                                                         \
        if constexpr (P::kMin) {                                                                                  \
            const float* sp = A.s_t + int64_t(b) * A.n_tok + t0;                                                  \
            const __m128 s = RN == 4 ? _mm_loadu_ps(sp) : RN == 1 ? _mm_load_ss(sp) : load_partial<RN>(sp);       \
            _Pragma("GCC unroll 4") for (int i = 0; i < RM; ++i) {                                                \
                const __m128 m = _mm_cvtph_ps(_mm_set1_epi16(short(W[int64_t(i) * nb + b].m)));                   \
                msum[i] = _mm_fmadd_ps(m, s, msum[i]);                                                            \
            }                                                                                                     \
        }                                                                                                         \
    }                                                                                                             \
    _Pragma("GCC unroll 4") for (int i = 0; i < RM; ++i) {                                                        \
        float ms[4];                                                                                              \
        _mm_storeu_ps(ms, msum[i]);                                                                               \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; ++j) {                                                    \
            const float dot = simd::hsum_float_8(acc[i][j]);                                                      \
            Y[int64_t(t0 + j) * ldy + i] = P::kMin ? dot + ms[j] : dot;                                           \
        }                                                                                                         \
    }

template <int RN>
REPRISE_T_AVX2 inline __m128 load_partial(const float* p) {
    float v[4] = {0, 0, 0, 0};
    for (int j = 0; j < RN; ++j) v[j] = p[j];
    return _mm_loadu_ps(v);
}

template <class P, int RM, int RN>
REPRISE_T_AVX2 void tile_avx2(const typename P::Block* W, const Act<typename P::ActBlock>& A, int t0, float* Y, int64_t ldy) {
    REPRISE_LEGACY_TILE_BODY(LanesAvx2, unpack)
}
template <class P, int RM, int RN>
REPRISE_T_VNNI void tile_vnni(const typename P::Block* W, const Act<typename P::ActBlock>& A, int t0, float* Y, int64_t ldy) {
    REPRISE_LEGACY_TILE_BODY(LanesVnni, unpack_vnni)
}

template <class P, bool kVnni, int RM, int RN>
inline void tile(const typename P::Block* W, const Act<typename P::ActBlock>& A, int t0, float* Y, int64_t ldy) {
    if constexpr (kVnni)
        tile_vnni<P, RM, RN>(W, A, t0, Y, ldy);
    else
        tile_avx2<P, RM, RN>(W, A, t0, Y, ldy);
}

// Rows [r0, r1) x all tokens: RM x RN tiles, then narrower ones for the remainders.
template <class P, bool kVnni, int RM, int RN>
void run_rows(const typename P::Block* W, int rows, const Act<typename P::ActBlock>& A, float* Y, int64_t r0, int64_t r1) {
    const int nb = A.nb, n_tok = A.n_tok;
    int64_t r = r0;
    for (; r + RM <= r1; r += RM) {
        const typename P::Block* w = W + r * nb;
        int t = 0;
        for (; t + RN <= n_tok; t += RN) tile<P, kVnni, RM, RN>(w, A, t, Y + r, rows);
        for (; t < n_tok; ++t) tile<P, kVnni, RM, 1>(w, A, t, Y + r, rows);
    }
    for (; r < r1; ++r) {
        const typename P::Block* w = W + r * nb;
        int t = 0;
        for (; t + RN <= n_tok; t += RN) tile<P, kVnni, 1, RN>(w, A, t, Y + r, rows);
        for (; t < n_tok; ++t) tile<P, kVnni, 1, 1>(w, A, t, Y + r, rows);
    }
}

// Decode-sized batches (n_tok < RN) are memory bound: one row stream at a time, as
// the former Q8_0/Q4_0 qgemm.cpp (now qgemm_x16.cpp) found fastest.
template <class P, bool kVnni, int RM, int RN>
void run(const typename P::Block* W, int rows, int cols, const typename P::ActBlock* Xq, int n_tok, float* Y, ThreadPool* pool) {
    thread_local ActBuffers buf;
    const auto A = prepare<P>(Xq, n_tok, cols / 32, buf);
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
        if (n_tok < RN)
            run_rows<P, kVnni, 1, RN>(W, rows, A, Y, r0, r1);
        else
            run_rows<P, kVnni, RM, RN>(W, rows, A, Y, r0, r1);
    }, 16);
}

// Tiles as the former Q8_0/Q4_0 qgemm.cpp's: 4x4 with 32 vector registers (VNNI), 2x4 with 16 (AVX2).
template <class P>
bool dispatch(const typename P::Block* W, int rows, int cols, const typename P::ActBlock* Xq, int n_tok, float* Y, ThreadPool* pool) {
    switch (kernels_isa()) {
        case KernelIsa::Avx512Vnni: run<P, true, 4, 4>(W, rows, cols, Xq, n_tok, Y, pool); return true;
        case KernelIsa::Avx2: run<P, false, 2, 4>(W, rows, cols, Xq, n_tok, Y, pool); return true;
        default: return false;
    }
}

}  // namespace
#endif

bool qgemm_q5_0(const BlockQ5_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool) {
#if defined(__x86_64__)
    return dispatch<Q5_0W>(W, rows, cols, Xq, n_tok, Y, pool);
#else
    (void)W, (void)rows, (void)cols, (void)Xq, (void)n_tok, (void)Y, (void)pool;
    return false;
#endif
}

bool qgemm_q4_1(const BlockQ4_1* W, int rows, int cols, const BlockQ8_1* Xq, int n_tok, float* Y, ThreadPool* pool) {
#if defined(__x86_64__)
    return dispatch<Q4_1W>(W, rows, cols, Xq, n_tok, Y, pool);
#else
    (void)W, (void)rows, (void)cols, (void)Xq, (void)n_tok, (void)Y, (void)pool;
    return false;
#endif
}

bool qgemm_q5_1(const BlockQ5_1* W, int rows, int cols, const BlockQ8_1* Xq, int n_tok, float* Y, ThreadPool* pool) {
#if defined(__x86_64__)
    return dispatch<Q5_1W>(W, rows, cols, Xq, n_tok, Y, pool);
#else
    (void)W, (void)rows, (void)cols, (void)Xq, (void)n_tok, (void)Y, (void)pool;
    return false;
#endif
}

}  // namespace reprise::engine
