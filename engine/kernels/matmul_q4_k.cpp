#include "engine/kernels/matmul_q4_k.hpp"

#include <cstring>

#include "engine/kernels/k_scales.hpp"
#include "engine/kernels/qgemm_k.hpp"

namespace reprise::engine {

// ggml's ggml_vec_dot_q4_K_q8_K_generic, same float order: per block, 8 int32 lanes
// (lane l: the values l, l+8, l+16, ...) scaled into 8 float sums, the min term
// subtracted from one scalar sum; the lanes are added at the end.
float vec_dot_q4_K_q8_K_ref(int n, const BlockQ4_K* x, const BlockQ8_K* y) {
    float sums[8] = {};
    float sumf = 0;
    for (int i = 0; i < n / kQK_K; ++i) {
        int8_t a[kQK_K];
        for (int j = 0; j < kQK_K / 64; ++j)
            for (int l = 0; l < 32; ++l) {
                a[64 * j + l] = int8_t(x[i].qs[32 * j + l] & 0xF);
                a[64 * j + 32 + l] = int8_t(x[i].qs[32 * j + l] >> 4);
            }
        uint8_t sm[16];
        unpack_scales_mins(x[i].scales, sm);
        int sumi = 0;
        for (int j = 0; j < kQK_K / 16; ++j) sumi += y[i].bsums[j] * sm[8 + j / 2];
        int32_t aux32[8] = {};
        for (int j = 0; j < kQK_K / 8; ++j) {
            const int32_t scale = sm[j / 4];
            for (int l = 0; l < 8; ++l) aux32[l] += scale * int16_t(y[i].qs[8 * j + l] * a[8 * j + l]);
        }
        const float d = fp16_to_fp32(x[i].d) * y[i].d;
        for (int l = 0; l < 8; ++l) sums[l] += d * aux32[l];
        const float dmin = fp16_to_fp32(x[i].dmin) * y[i].d;
        sumf -= dmin * sumi;
    }
    for (int l = 0; l < 8; ++l) sumf += sums[l];
    return sumf;
}

#if defined(__x86_64__)
namespace {
struct Q4KPolicy {
    using Block = BlockQ4_K;
    static constexpr bool kHasMin = true;
    struct Scales {
        float d;
        __m256 u;      // dmin * the 8 mins (the min term's weight side)
        __m256i m16;   // unused (Q6_K's offset)
        uint8_t sc[8];
    };
    REPRISE_KT_AVX2 static inline Scales scales(const Block& b) {
        Scales s;
        uint8_t sm[16];
        unpack_scales_mins(b.scales, sm);
        std::memcpy(s.sc, sm, 8);
        const __m128i m = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 8));
        s.u = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b.dmin)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(m)));
        s.m16 = _mm256_setzero_si256();
        s.d = _cvtsh_ss(b.d);  // F16C: exact, as fp16_to_fp32
        return s;
    }
    // Chunk j: the low nibbles of bytes 32*(j/2).. for even j, the high ones for odd j.
    REPRISE_KT_AVX2 static inline __m256i quants(const Block& b, int j) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * (j / 2)));
        return _mm256_and_si256(j % 2 ? _mm256_srli_epi16(q, 4) : q, _mm256_set1_epi8(0x0F));
    }
    REPRISE_KT_AVX2 static inline __m256i scale16(const Scales& s, int j) { return _mm256_set1_epi16(s.sc[j]); }
};
}  // namespace
#endif

float vec_dot_q4_K_q8_K(int n, const BlockQ4_K* x, const BlockQ8_K* y) {
#if defined(__x86_64__)
    float out;
    if (qgemm_k::vec_dot<Q4KPolicy>(n, x, y, &out)) return out;
#endif
    return vec_dot_q4_K_q8_K_ref(n, x, y);
}

void matmul_q4_K(const BlockQ4_K* W, int rows, int cols, const BlockQ8_K* Xq, int n_tok, float* Y, ThreadPool* pool) {
#if defined(__x86_64__)
    if (qgemm_k::matmul<Q4KPolicy>(W, rows, cols, Xq, n_tok, Y, pool)) return;
#endif
    const int nb = cols / kQK_K;
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            for (int t = 0; t < n_tok; ++t) Y[int64_t(t) * rows + r] = vec_dot_q4_K_q8_K_ref(cols, W + r * nb, Xq + int64_t(t) * nb);
    }, 16);
}

}  // namespace reprise::engine
