#include "engine/kernels/matmul_q6_k.hpp"

#include "engine/kernels/qgemm_k.hpp"

namespace reprise::engine {

// ggml's ggml_vec_dot_q6_K_q8_K_generic, same float order: per block, 8 int32 lanes
// (lane l: the values l, l+8, l+16, ...) of scale * (q - 32) * y, scaled into 8 float
// sums that are added at the end.
float vec_dot_q6_K_q8_K_ref(int n, const BlockQ6_K* x, const BlockQ8_K* y) {
    float sums[8] = {};
    for (int i = 0; i < n / kQK_K; ++i) {
        int8_t a[kQK_K];
        const uint8_t* ql = x[i].ql;
        const uint8_t* qh = x[i].qh;
        for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32)
            for (int l = 0; l < 32; ++l) {
                a[j + l + 0] = int8_t((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                a[j + l + 32] = int8_t((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                a[j + l + 64] = int8_t((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                a[j + l + 96] = int8_t((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            }
        int32_t aux32[8] = {};
        for (int j = 0; j < kQK_K / 8; ++j) {
            const int32_t scale = x[i].scales[j / 2];
            for (int l = 0; l < 8; ++l) aux32[l] += scale * int16_t(y[i].qs[8 * j + l] * a[8 * j + l]);
        }
        const float d = fp16_to_fp32(x[i].d) * y[i].d;
        for (int l = 0; l < 8; ++l) sums[l] += d * aux32[l];
    }
    float sumf = 0;
    for (int l = 0; l < 8; ++l) sumf += sums[l];
    return sumf;
}

#if defined(__x86_64__)
namespace {
struct Q6KPolicy {
    using Block = BlockQ6_K;
    static constexpr bool kHasMin = false;  // the -32 offset: m16 = the scales, against the bsums
    struct Scales {
        float d;
        __m256 u;     // unused (the mins of Q4_K/Q5_K)
        __m256i m16;  // the 16 scales as int16, one per 16 values (bsum)
        __m128i sc8;  // the same as int8
    };
    REPRISE_KT_AVX2 static inline Scales scales(const Block& b) {
        const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
        return {_cvtsh_ss(b.d), _mm256_setzero_ps(), _mm256_cvtepi8_epi16(sc8), sc8};
    }
    // Values 32j..32j+31 unsigned (0..63): in each 128-half h = j/4, chunk c = j%4 takes
    // the low (c < 2) or high nibbles of ql[64h + 32(c&1)..] and bits 2c, 2c+1 of qh[32h..].
    REPRISE_KT_AVX2 static inline __m256i quants(const Block& b, int j) {
        const int h = j / 4, c = j % 4;
        const __m256i l = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32 * (c & 1)));
        const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
        const __m256i lo = _mm256_and_si256(c < 2 ? l : _mm256_srli_epi16(l, 4), _mm256_set1_epi8(0x0F));
        const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * c)), _mm256_set1_epi8(3));
        return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));  // bytes hold 0..3: the shift stays in the byte
    }
    // Lanes 0..7 (values 32j..32j+15) scale 2j, lanes 8..15 scale 2j+1.
    REPRISE_KT_AVX2 static inline __m256i scale16(const Scales& s, int j) {
        const __m128i pick = _mm_set_epi64x(0x0101010101010101LL * (2 * j + 1), 0x0101010101010101LL * (2 * j));
        return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s.sc8, pick));
    }
};
}  // namespace
#endif

float vec_dot_q6_K_q8_K(int n, const BlockQ6_K* x, const BlockQ8_K* y) {
#if defined(__x86_64__)
    float out;
    if (qgemm_k::vec_dot<Q6KPolicy>(n, x, y, &out)) return out;
#endif
    return vec_dot_q6_K_q8_K_ref(n, x, y);
}

void matmul_q6_K(const BlockQ6_K* W, int rows, int cols, const BlockQ8_K* Xq, int n_tok, float* Y, ThreadPool* pool) {
#if defined(__x86_64__)
    if (qgemm_k::matmul<Q6KPolicy>(W, rows, cols, Xq, n_tok, Y, pool)) return;
#endif
    const int nb = cols / kQK_K;
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            for (int t = 0; t < n_tok; ++t) Y[int64_t(t) * rows + r] = vec_dot_q6_K_q8_K_ref(cols, W + r * nb, Xq + int64_t(t) * nb);
    }, 16);
}

}  // namespace reprise::engine
