#pragma once
// AVX2 helpers shared by the quantized dot products (ggml-cpu's x86 quants, same
// names). Header-only, every function compiled for target("avx2,fma,f16c").
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>

namespace reprise::engine::simd {

// Sum of the 8 lanes.
__attribute__((target("avx2,fma,f16c"))) inline float hsum_float_8(__m256 x) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// Signed int8 x int8 dot in 8 int32 lanes as float. maddubs needs an unsigned left
// operand: |x| and y * sign(x) give the same products; the i16 pair sums cannot
// saturate because Q8_0 values lie in [-127, 127] (2 * 127 * 128 < 32767).
__attribute__((target("avx2,fma,f16c"))) inline __m256 mul_sum_i8_pairs_float(__m256i x, __m256i y) {
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    const __m256i dot16 = _mm256_maddubs_epi16(ax, sy);
    const __m256i dot32 = _mm256_madd_epi16(dot16, _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(dot32);
}

// Signed int8 x int8 dot in 8 int32 lanes (exact), as mul_sum_i8_pairs_float before the
// conversion.
__attribute__((target("avx2,fma,f16c"))) inline __m256i mul_sum_i8_pairs(__m256i x, __m256i y) {
    const __m256i dot16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return _mm256_madd_epi16(dot16, _mm256_set1_epi16(1));
}

// Sum of the 8 int32 lanes.
__attribute__((target("avx2,fma,f16c"))) inline int hsum_i32_8(__m256i x) {
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
    r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 1));
    return _mm_cvtsi128_si32(r);
}

// 16 bytes of nibbles -> 32 bytes: low nibbles in bytes 0..15, high in 16..31.
__attribute__((target("avx2,fma,f16c"))) inline __m256i bytes_from_nibbles_32(const uint8_t* p) {
    const __m128i tmp = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m256i bytes = _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
    return _mm256_and_si256(bytes, _mm256_set1_epi8(0x0F));
}

}  // namespace reprise::engine::simd
#endif
