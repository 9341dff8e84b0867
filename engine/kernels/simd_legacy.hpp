#pragma once
// AVX2 unpacking of the older 32-blocks (Q4_1, Q5_0, Q5_1) into 32 unsigned bytes, byte i
// = element i: the low nibbles hold elements 0..15, the high ones 16..31, and for the
// 5-bit types bit i of qh is bit 4 of element i. Shared by the one-token dots
// (matmul_q4_1/q5_0/q5_1.cpp) and the tiled kernels (qgemm_legacy.cpp).
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "engine/kernels/simd_q8.hpp"

namespace reprise::engine::simd {

// 32 bits -> 32 bytes, 0xFF where bit i is set (ggml's bytes_from_bits_32): byte i is
// given byte i / 8 of the word, ORed with every bit but i % 8, then compared with 0xFF.
__attribute__((target("avx2,fma,f16c"))) inline __m256i bytes_from_bits_32(const uint8_t* p) {
    uint32_t bits;
    std::memcpy(&bits, p, sizeof bits);
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(int(bits)),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000));
    const __m256i others = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(others, _mm256_set1_epi64x(-1));
}

// 5-bit values 0..31: nibbles | (qh bit << 4).
__attribute__((target("avx2,fma,f16c"))) inline __m256i bytes_from_q5(const uint8_t* qs, const uint8_t* qh) {
    const __m256i hi = _mm256_and_si256(bytes_from_bits_32(qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(bytes_from_nibbles_32(qs), hi);
}

// Unsigned x signed bytes -> 8 int32 lanes, lane k = exact sum of the products of bytes
// 4k..4k+3. maddubs cannot saturate: weights are at most 31, |y| at most 127.
__attribute__((target("avx2,fma,f16c"))) inline __m256i lanes_u8_s8(__m256i x, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
}

}  // namespace reprise::engine::simd
#endif
