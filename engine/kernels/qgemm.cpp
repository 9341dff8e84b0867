#include "engine/kernels/qgemm.hpp"

#include <type_traits>
#include <vector>

#include "engine/kernels/cpu.hpp"
#include "engine/kernels/simd_q8.hpp"

namespace reprise::engine {

#if defined(__x86_64__)
namespace {

#define REPRISE_T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define REPRISE_T_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

// Activations prepared once per matmul call (shared by all threads): the block scales as
// float and, per block, the 8 int32 lanes of -offset * (sum of the 4 bytes of that lane),
// which turns an unsigned-weight dot (q + offset) . y into the signed one q . y exactly.
struct Act {
    const BlockQ8_0* q;
    const float* d;        // [n_tok * nb]
    const int32_t* corr;   // [n_tok * nb * 8], or null when the path needs none
    int nb;
};

// ---- weight policies: prep() once per weight block, lanes() per (weight block, token block)

struct Q8Avx2 {  // signed x signed via |x| and y * sign(x) (ggml's mul_sum_i8_pairs)
    using Block = BlockQ8_0;
    static constexpr int kOffset = 0;
    struct Prep { __m256i x, ax; };
    REPRISE_T_AVX2 static inline Prep prep(const Block& b) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
        return {x, _mm256_sign_epi8(x, x)};
    }
    REPRISE_T_AVX2 static inline __m256i lanes(const Prep& p, __m256i y, const int32_t*) {
        const __m256i dot16 = _mm256_maddubs_epi16(p.ax, _mm256_sign_epi8(y, p.x));
        return _mm256_madd_epi16(dot16, _mm256_set1_epi16(1));
    }
};

struct Q4Avx2 {  // nibbles 0..15 are unsigned already: maddubs cannot saturate (2*15*127)
    using Block = BlockQ4_0;
    static constexpr int kOffset = 8;
    using Prep = __m256i;
    REPRISE_T_AVX2 static inline Prep prep(const Block& b) { return simd::bytes_from_nibbles_32(b.qs); }
    REPRISE_T_AVX2 static inline __m256i lanes(const Prep& p, __m256i y, const int32_t* corr) {
        const __m256i dot16 = _mm256_maddubs_epi16(p, y);
        const __m256i dot32 = _mm256_madd_epi16(dot16, _mm256_set1_epi16(1));
        return _mm256_add_epi32(dot32, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr)));
    }
};

struct Q8Vnni {  // (x + 128) is unsigned: vpdpbusd onto -128 * lane sums of y
    using Block = BlockQ8_0;
    static constexpr int kOffset = 128;
    using Prep = __m256i;
    REPRISE_T_VNNI static inline Prep prep(const Block& b) {
        return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)), _mm256_set1_epi8(char(0x80)));
    }
    REPRISE_T_VNNI static inline __m256i lanes(const Prep& p, __m256i y, const int32_t* corr) {
        return _mm256_dpbusd_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr)), p, y);
    }
};

struct Q4Vnni {  // nibbles (unsigned) onto -8 * lane sums of y
    using Block = BlockQ4_0;
    static constexpr int kOffset = 8;
    using Prep = __m256i;
    REPRISE_T_VNNI static inline Prep prep(const Block& b) { return simd::bytes_from_nibbles_32(b.qs); }
    REPRISE_T_VNNI static inline __m256i lanes(const Prep& p, __m256i y, const int32_t* corr) {
        return _mm256_dpbusd_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr)), p, y);
    }
};

// Decode (one token) is memory bound: prefetch this far ahead in the weight row stream
// (rows are contiguous). Tuned by A/B on the dev VM (Zen 4); 1024..2048 are all close.
constexpr int kPrefetchBytes = 2048;
// RM weight rows x RN tokens register tile over all blocks of the row.
#define REPRISE_TILE_BODY                                                                                    \
    __m256 acc[RM][RN];                                                                                      \
    _Pragma("GCC unroll 4") for (int i = 0; i < RM; ++i)                                                     \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; ++j) acc[i][j] = _mm256_setzero_ps();                                        \
    const int nb = A.nb;                                                                                     \
    for (int b = 0; b < nb; ++b) {                                                                           \
        if (RN == 1) /* decode: memory bound, stream the rows ahead */                                       \
            _mm_prefetch(reinterpret_cast<const char*>(W + b) + kPrefetchBytes, _MM_HINT_T0);                    \
        typename P::Prep w[RM];                                                                              \
        __m256 dw[RM];                                                                                       \
        _Pragma("GCC unroll 4") for (int i = 0; i < RM; ++i) {                                               \
            const typename P::Block& blk = W[int64_t(i) * nb + b];                                           \
            w[i] = P::prep(blk);                                                                             \
            dw[i] = _mm256_cvtph_ps(_mm_set1_epi16(short(blk.d)));                                           \
        }                                                                                                    \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; ++j) {                                               \
            const int64_t k = int64_t(t0 + j) * nb + b;                                                      \
            const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(A.q[k].qs));               \
            const __m256 dy = _mm256_broadcast_ss(A.d + k);                                                  \
            const int32_t* corr = A.corr ? A.corr + k * 8 : nullptr;                                         \
            _Pragma("GCC unroll 4") for (int i = 0; i < RM; ++i) {                                           \
                const __m256 l = _mm256_cvtepi32_ps(P::lanes(w[i], y, corr));                                \
                acc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(dw[i], dy), l, acc[i][j]);                         \
            }                                                                                                \
        }                                                                                                    \
    }                                                                                                        \
    _Pragma("GCC unroll 4") for (int i = 0; i < RM; ++i)                                                     \
        _Pragma("GCC unroll 4") for (int j = 0; j < RN; ++j) Y[int64_t(t0 + j) * ldy + i] = simd::hsum_float_8(acc[i][j]);

template <class P, int RM, int RN>
REPRISE_T_AVX2 void tile_avx2(const typename P::Block* W, const Act& A, int t0, float* Y, int64_t ldy) {
    REPRISE_TILE_BODY
}
template <class P, int RM, int RN>
REPRISE_T_VNNI void tile_vnni(const typename P::Block* W, const Act& A, int t0, float* Y, int64_t ldy) {
    REPRISE_TILE_BODY
}

template <class P, int RM, int RN>
void tile(const typename P::Block* W, const Act& A, int t0, float* Y, int64_t ldy) {
    if constexpr (std::is_same_v<P, Q8Vnni> || std::is_same_v<P, Q4Vnni>)
        tile_vnni<P, RM, RN>(W, A, t0, Y, ldy);
    else
        tile_avx2<P, RM, RN>(W, A, t0, Y, ldy);
}

// Rows [r0, r1) x all tokens: RM x RN tiles, then narrower ones for the remainders.
template <class P, int RM, int RN>
void run_rows(const typename P::Block* W, int rows, const Act& A, int n_tok, float* Y, int64_t r0, int64_t r1) {
    const int nb = A.nb;
    int64_t r = r0;
    for (; r + RM <= r1; r += RM) {
        const typename P::Block* w = W + r * nb;
        int t = 0;
        for (; t + RN <= n_tok; t += RN) tile<P, RM, RN>(w, A, t, Y + r, rows);
        for (; t < n_tok; ++t) tile<P, RM, 1>(w, A, t, Y + r, rows);
    }
    for (; r < r1; ++r) {
        const typename P::Block* w = W + r * nb;
        int t = 0;
        for (; t + RN <= n_tok; t += RN) tile<P, 1, RN>(w, A, t, Y + r, rows);
        for (; t < n_tok; ++t) tile<P, 1, 1>(w, A, t, Y + r, rows);
    }
}

// Rows per tile for decode-sized batches: walking 2 or 4 row streams at once halved
// Q8_0 decode speed on the dev VM (prefetchers), one row at a time is fastest.
constexpr int kDecodeRows = 1;
struct ActBuffers {
    std::vector<float> d;
    std::vector<int32_t> corr;
};

// Scales as float, and the offset correction lanes when offset != 0.
Act prepare(const BlockQ8_0* Xq, int n_tok, int nb, int offset, ActBuffers& buf) {
    const size_t n = size_t(n_tok) * size_t(nb);
    buf.d.resize(n);
    for (size_t k = 0; k < n; ++k) buf.d[k] = fp16_to_fp32(Xq[k].d);
    if (offset != 0) {
        buf.corr.resize(n * 8);
        for (size_t k = 0; k < n; ++k)
            for (int l = 0; l < 8; ++l) {
                const int8_t* q = Xq[k].qs + 4 * l;
                buf.corr[k * 8 + size_t(l)] = -offset * (int(q[0]) + int(q[1]) + int(q[2]) + int(q[3]));
            }
    }
    return Act{Xq, buf.d.data(), offset != 0 ? buf.corr.data() : nullptr, nb};
}

// Decode-sized batches (n_tok < RN) are memory bound: rows are walked RMD at a time.
template <class P, int RM, int RN, int RMD>
void run(const typename P::Block* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool) {
    thread_local ActBuffers buf;
    const Act A = prepare(Xq, n_tok, cols / 32, P::kOffset, buf);
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
        if (n_tok < RN)
            run_rows<P, RMD, RN>(W, rows, A, n_tok, Y, r0, r1);
        else
            run_rows<P, RM, RN>(W, rows, A, n_tok, Y, r0, r1);
    }, 16);
}

}  // namespace
#endif

bool qgemm_q8_0(const BlockQ8_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool) {
#if defined(__x86_64__)
    switch (kernels_isa()) {
        case KernelIsa::Avx512Vnni: run<Q8Vnni, 4, 4, kDecodeRows>(W, rows, cols, Xq, n_tok, Y, pool); return true;
        case KernelIsa::Avx2: run<Q8Avx2, 2, 4, kDecodeRows>(W, rows, cols, Xq, n_tok, Y, pool); return true;
        default: break;
    }
#endif
    (void)W, (void)rows, (void)cols, (void)Xq, (void)n_tok, (void)Y, (void)pool;
    return false;
}

bool qgemm_q4_0(const BlockQ4_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool) {
#if defined(__x86_64__)
    switch (kernels_isa()) {
        case KernelIsa::Avx512Vnni: run<Q4Vnni, 4, 4, kDecodeRows>(W, rows, cols, Xq, n_tok, Y, pool); return true;
        case KernelIsa::Avx2: run<Q4Avx2, 2, 4, kDecodeRows>(W, rows, cols, Xq, n_tok, Y, pool); return true;
        default: break;
    }
#endif
    (void)W, (void)rows, (void)cols, (void)Xq, (void)n_tok, (void)Y, (void)pool;
    return false;
}

}  // namespace reprise::engine
