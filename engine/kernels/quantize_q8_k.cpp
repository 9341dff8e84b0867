#include "engine/kernels/quantize_q8_k.hpp"

#include <cmath>
#include <cstring>

#include "engine/kernels/cpu.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace reprise::engine {

#if defined(__x86_64__)
// Same values as the reference, step for step: the largest |x| (max is exact in any
// order), the first x that has it (the reference keeps the first on ties, so its sign
// decides), iscale = -127 / that x, q = round half to even (cvtps under the default
// MXCSR rounding, as ggml's nearest_int for |v| < 2^22), min(q, 127), exact int sums.
__attribute__((target("avx2,fma,f16c"))) static void quantize_row_q8_K_avx2(const float* x, BlockQ8_K* y, int64_t k) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < k / kQK_K; ++i, x += kQK_K) {
        __m256 vmax = _mm256_setzero_ps();
        for (int j = 0; j < kQK_K; j += 8) vmax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask), vmax);  // a NaN x is skipped, as in the reference
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        if (!(amax > 0)) {  // all zero (or NaN: the reference's own path, for its exact bytes)
            quantize_row_q8_K_ref(x, &y[i], kQK_K);
            continue;
        }
        float max = 0;
        for (int j = 0; j < kQK_K; ++j)
            if (std::fabs(x[j]) == amax) {
                max = x[j];
                break;
            }
        const float iscale = -127.f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        const __m256i top = _mm256_set1_epi32(127);
        for (int j = 0; j < kQK_K; j += 32) {
            __m256i q[4];
            for (int l = 0; l < 4; ++l)
                q[l] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(x + j + 8 * l))), top);
            // int32 -> int8 (values in [-127, 127]: no saturation); packs interleave the
            // 128-bit halves, the permute puts the 32 bytes back in order.
            const __m256i q16a = _mm256_packs_epi32(q[0], q[1]), q16b = _mm256_packs_epi32(q[2], q[3]);
            const __m256i q8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(q16a, q16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + j), q8);
        }
        for (int g = 0; g < kQK_K / 16; ++g) {
            const __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y[i].qs + 16 * g)));
            const __m256i s = _mm256_madd_epi16(v, _mm256_set1_epi16(1));
            __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
            y[i].bsums[g] = int16_t(_mm_cvtsi128_si32(h));
        }
        y[i].d = 1 / iscale;
    }
}
#endif

void quantize_row_q8_K(const float* x, BlockQ8_K* y, int64_t k) {
#if defined(__x86_64__)
    if (kernels_isa() != KernelIsa::Scalar) return quantize_row_q8_K_avx2(x, y, k);
#endif
    quantize_row_q8_K_ref(x, y, k);
}

}  // namespace reprise::engine
