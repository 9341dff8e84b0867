#pragma once
// The arithmetic of every quantized weight type against its activation format, as
// __host__ __device__ code: the kernels (q_dot.cuh) run it on the device, and
// tests/engine/cuda_units_test.cpp runs the very same functions on the host (with
// exact emulations of __dp4a and __vsub4) to check the decoding against ggml's
// references on machines without a GPU.
//
// A row is cut into units (Unit<T>::count): Q8_0 a 16-byte half block, the 32-blocks
// a block, the K-quants 64 elements of a 256-element super-block. A unit's integer
// dot products are exact (__dp4a); each unit then adds its scaled terms to the lane's
// float sum with explicit fmaf (no contraction choices left to the compiler). Which
// lane takes which unit depends only on the row's width, so a (row, token) result
// depends on nothing but the row and the token (batch invariance, kernels.hpp).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "engine/cuda/formats.hpp"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define REPRISE_HD __host__ __device__ __forceinline__
#define REPRISE_UNROLL _Pragma("unroll")
#else
#define REPRISE_HD inline
#define REPRISE_UNROLL
#endif

namespace reprise::engine::cuda::units {

struct I4 {
    int x, y, z, w;
};

// 16 bytes from a 16-byte-aligned address: one 128-bit load on the device.
REPRISE_HD I4 load16(const void* p) {
#ifdef __CUDA_ARCH__
    const int4 v = *reinterpret_cast<const int4*>(p);
    return {v.x, v.y, v.z, v.w};
#else
    I4 v;
    std::memcpy(&v, p, 16);
    return v;
#endif
}

// c + the dot of a's and b's 4 signed bytes (__dp4a).
REPRISE_HD int dp4a(int a, int b, int c) {
#ifdef __CUDA_ARCH__
    return __dp4a(a, b, c);
#else
    for (int k = 0; k < 4; ++k) c += int(int8_t(uint32_t(a) >> (8 * k))) * int(int8_t(uint32_t(b) >> (8 * k)));
    return c;
#endif
}

// Per byte a - b, modulo 256 (__vsub4).
REPRISE_HD int vsub4(int a, int b) {
#ifdef __CUDA_ARCH__
    return int(__vsub4(unsigned(a), unsigned(b)));
#else
    uint32_t r = 0;
    for (int k = 0; k < 4; ++k) r |= (((uint32_t(a) >> (8 * k)) - (uint32_t(b) >> (8 * k))) & 0xFFu) << (8 * k);
    return int(r);
#endif
}

REPRISE_HD float half_to_float(uint32_t h) {
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half(uint16_t(h)));
#else
    const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    float f;
    if (exp == 0) {
        f = std::ldexp(float(mant), -24);  // zero or subnormal: exact in float
        return sign ? -f : f;
    }
    const uint32_t bits = exp == 31 ? sign | 0x7F800000u | (mant << 13) : sign | ((exp + 112) << 23) | (mant << 13);
    std::memcpy(&f, &bits, 4);
    return f;
#endif
}

REPRISE_HD int dot16(const I4& w, const I4& a, int acc) {
    acc = dp4a(w.x, a.x, acc);
    acc = dp4a(w.y, a.y, acc);
    acc = dp4a(w.z, a.z, acc);
    return dp4a(w.w, a.w, acc);
}

constexpr int kLow = 0x0F0F0F0F;
REPRISE_HD I4 low_nibbles(const I4& q) { return {q.x & kLow, q.y & kLow, q.z & kLow, q.w & kLow}; }
REPRISE_HD I4 high_nibbles(const I4& q) {
    return {(q.x >> 4) & kLow, (q.y >> 4) & kLow, (q.z >> 4) & kLow, (q.w >> 4) & kLow};
}
REPRISE_HD I4 sub_bytes(const I4& q, int v) { return {vsub4(q.x, v), vsub4(q.y, v), vsub4(q.z, v), vsub4(q.w, v)}; }

// Bits 0..3 of h to bit 4 of bytes 0..3 (Q5_0/Q5_1's fifth bits, as ggml-cuda's vecdotq).
REPRISE_HD int spread4(uint32_t h) {
    return int(((h << 4) & 0x10u) | ((h << 11) & 0x1000u) | ((h << 18) & 0x100000u) | ((h << 25) & 0x10000000u));
}
// Q5_0/Q5_1: the 16 quants' low nibbles (elements 0..15) and high ones (16..31), each
// with its fifth bit from qh.
REPRISE_HD void q5_quants(const I4& q, uint32_t qh, I4* lo, I4* hi) {
    *lo = {(q.x & kLow) | spread4(qh), (q.y & kLow) | spread4(qh >> 4), (q.z & kLow) | spread4(qh >> 8),
           (q.w & kLow) | spread4(qh >> 12)};
    *hi = {((q.x >> 4) & kLow) | spread4(qh >> 16), ((q.y >> 4) & kLow) | spread4(qh >> 20),
           ((q.z >> 4) & kLow) | spread4(qh >> 24), ((q.w >> 4) & kLow) | spread4(qh >> 28)};
}

// ggml's get_scale_min_k4 over the 12 scale bytes held as three little-endian words.
REPRISE_HD int scale_byte(uint32_t s0, uint32_t s1, uint32_t s2, int k) {
    const uint32_t w = k < 4 ? s0 : k < 8 ? s1 : s2;
    return int((w >> (8 * (k & 3))) & 0xFFu);
}
REPRISE_HD void scale_min_k4(int j, uint32_t s0, uint32_t s1, uint32_t s2, int* sc, int* m) {
    if (j < 4) {
        *sc = scale_byte(s0, s1, s2, j) & 63;
        *m = scale_byte(s0, s1, s2, j + 4) & 63;
    } else {
        *sc = (scale_byte(s0, s1, s2, j + 4) & 0xF) | ((scale_byte(s0, s1, s2, j - 4) >> 6) << 4);
        *m = (scale_byte(s0, s1, s2, j + 4) >> 4) | ((scale_byte(s0, s1, s2, j) >> 6) << 4);
    }
}

template <WeightType T>
struct Unit;

// Q8_0 x Q8_0: a unit is half a block (16 quants).
template <>
struct Unit<WeightType::Q8_0> {
    I4 q;
    float dw;
    REPRISE_HD static int count(int cols) { return cols / 16; }
    REPRISE_HD void load(const DevWeight& w, int row, int u) {
        q = load16(w.qs + size_t(row) * w.cols + size_t(u) * 16);
        dw = half_to_float(w.d[size_t(row) * (w.cols / 32) + size_t(u / 2)]);
    }
    REPRISE_HD float dot(const DevQ8& x, size_t tok, int cols, int u, float acc) const {
        const I4 a = load16(x.qs + tok * cols + size_t(u) * 16);
        return fmaf(float(dot16(q, a, 0)), dw * x.d[tok * (cols / 32) + size_t(u / 2)], acc);
    }
};

// Q4_0 x Q8_0: a unit is a block; quants q - 8.
template <>
struct Unit<WeightType::Q4_0> {
    I4 lo, hi;
    float dw;
    REPRISE_HD static int count(int cols) { return cols / 32; }
    REPRISE_HD void load(const DevWeight& w, int row, int u) {
        const I4 q = load16(w.qs + size_t(row) * (w.cols / 2) + size_t(u) * 16);
        lo = sub_bytes(low_nibbles(q), 0x08080808);
        hi = sub_bytes(high_nibbles(q), 0x08080808);
        dw = half_to_float(w.d[size_t(row) * (w.cols / 32) + size_t(u)]);
    }
    REPRISE_HD float dot(const DevQ8& x, size_t tok, int cols, int u, float acc) const {
        const int8_t* xq = x.qs + tok * cols + size_t(u) * 32;
        const int sum = dot16(hi, load16(xq + 16), dot16(lo, load16(xq), 0));
        return fmaf(float(sum), dw * x.d[tok * (cols / 32) + size_t(u)], acc);
    }
};

// Q4_1 x Q8_1: d * d_x * sum(q * q_x) + m * s_x per block (s_x = d_x * sum(q_x)).
template <>
struct Unit<WeightType::Q4_1> {
    I4 lo, hi;
    float dw, mw;
    REPRISE_HD static int count(int cols) { return cols / 32; }
    REPRISE_HD void load(const DevWeight& w, int row, int u) {
        const I4 q = load16(w.qs + size_t(row) * (w.cols / 2) + size_t(u) * 16);
        lo = low_nibbles(q), hi = high_nibbles(q);
        const size_t b = size_t(row) * (w.cols / 32) + size_t(u);
        dw = half_to_float(w.d[b]), mw = half_to_float(w.m[b]);
    }
    REPRISE_HD float dot(const DevQ8& x, size_t tok, int cols, int u, float acc) const {
        const int8_t* xq = x.qs + tok * cols + size_t(u) * 32;
        const int sum = dot16(hi, load16(xq + 16), dot16(lo, load16(xq), 0));
        const size_t b = tok * (cols / 32) + size_t(u);
        return fmaf(mw, x.s[b], fmaf(float(sum), dw * x.d[b], acc));
    }
};

// Q5_0 x Q8_0: quants (low nibble | fifth bit << 4) - 16.
template <>
struct Unit<WeightType::Q5_0> {
    I4 lo, hi;
    float dw;
    REPRISE_HD static int count(int cols) { return cols / 32; }
    REPRISE_HD void load(const DevWeight& w, int row, int u) {
        const size_t b = size_t(row) * (w.cols / 32) + size_t(u);
        q5_quants(load16(w.qs + b * 16), w.qh[b], &lo, &hi);
        lo = sub_bytes(lo, 0x10101010), hi = sub_bytes(hi, 0x10101010);
        dw = half_to_float(w.d[b]);
    }
    REPRISE_HD float dot(const DevQ8& x, size_t tok, int cols, int u, float acc) const {
        const int8_t* xq = x.qs + tok * cols + size_t(u) * 32;
        const int sum = dot16(hi, load16(xq + 16), dot16(lo, load16(xq), 0));
        return fmaf(float(sum), dw * x.d[tok * (cols / 32) + size_t(u)], acc);
    }
};

// Q5_1 x Q8_1: as Q4_1 with 5-bit quants.
template <>
struct Unit<WeightType::Q5_1> {
    I4 lo, hi;
    float dw, mw;
    REPRISE_HD static int count(int cols) { return cols / 32; }
    REPRISE_HD void load(const DevWeight& w, int row, int u) {
        const size_t b = size_t(row) * (w.cols / 32) + size_t(u);
        q5_quants(load16(w.qs + b * 16), w.qh[b], &lo, &hi);
        dw = half_to_float(w.d[b]), mw = half_to_float(w.m[b]);
    }
    REPRISE_HD float dot(const DevQ8& x, size_t tok, int cols, int u, float acc) const {
        const int8_t* xq = x.qs + tok * cols + size_t(u) * 32;
        const int sum = dot16(hi, load16(xq + 16), dot16(lo, load16(xq), 0));
        const size_t b = tok * (cols / 32) + size_t(u);
        return fmaf(mw, x.s[b], fmaf(float(sum), dw * x.d[b], acc));
    }
};

// Q4_K / Q5_K x Q8_K: unit j of a super-block is its elements 64j..64j+63, sub-blocks
// 2j (ggml's low nibbles of qs[32j..32j+31]) and 2j+1 (the high ones), each with a
// 6-bit scale and min. The unit adds d * d_x * sum(sc * q . q_x) and subtracts
// dmin * d_x * sum(m * sum(q_x)), the latter from Q8_K's sums of 16.
template <WeightType T>
struct UnitK45 {
    I4 lo0, lo1, hi0, hi1;  // sub-block 2j (elements 0..15, 16..31), sub-block 2j+1
    int sc0, sc1, m0, m1;
    float d, dmin;
    REPRISE_HD static int count(int cols) { return cols / 64; }
    REPRISE_HD void load(const DevWeight& w, int row, int u) {
        constexpr bool q5 = T == WeightType::Q5_K;
        constexpr size_t kBlock = q5 ? 176 : 144, kQs = q5 ? 48 : 16;
        const int j = u % 4;
        const int8_t* blk = w.qs + (size_t(row) * (w.cols / 256) + size_t(u / 4)) * kBlock;
        const I4 h = load16(blk);
        d = half_to_float(uint32_t(h.x) & 0xFFFFu), dmin = half_to_float(uint32_t(h.x) >> 16);
        scale_min_k4(2 * j, uint32_t(h.y), uint32_t(h.z), uint32_t(h.w), &sc0, &m0);
        scale_min_k4(2 * j + 1, uint32_t(h.y), uint32_t(h.z), uint32_t(h.w), &sc1, &m1);
        const I4 q0 = load16(blk + kQs + 32 * j), q1 = load16(blk + kQs + 32 * j + 16);
        lo0 = low_nibbles(q0), lo1 = low_nibbles(q1), hi0 = high_nibbles(q0), hi1 = high_nibbles(q1);
        if constexpr (q5) {
            // qh[l]'s bit 2j is element l's fifth bit in sub-block 2j, bit 2j+1 in 2j+1.
            const I4 h0 = load16(blk + 16), h1 = load16(blk + 32);
            auto bit4 = [](int v, int shift) { return int(((uint32_t(v) >> shift) & 0x01010101u) << 4); };
            const int a = 2 * j, b = 2 * j + 1;
            lo0 = {lo0.x | bit4(h0.x, a), lo0.y | bit4(h0.y, a), lo0.z | bit4(h0.z, a), lo0.w | bit4(h0.w, a)};
            lo1 = {lo1.x | bit4(h1.x, a), lo1.y | bit4(h1.y, a), lo1.z | bit4(h1.z, a), lo1.w | bit4(h1.w, a)};
            hi0 = {hi0.x | bit4(h0.x, b), hi0.y | bit4(h0.y, b), hi0.z | bit4(h0.z, b), hi0.w | bit4(h0.w, b)};
            hi1 = {hi1.x | bit4(h1.x, b), hi1.y | bit4(h1.y, b), hi1.z | bit4(h1.z, b), hi1.w | bit4(h1.w, b)};
        }
    }
    REPRISE_HD float dot(const DevQ8& x, size_t tok, int cols, int u, float acc) const {
        const int b = u / 4, j = u % 4;
        const int8_t* xq = x.qs + tok * cols + size_t(b) * 256 + size_t(j) * 64;
        const int dlo = dot16(lo1, load16(xq + 16), dot16(lo0, load16(xq), 0));
        const int dhi = dot16(hi1, load16(xq + 48), dot16(hi0, load16(xq + 32), 0));
        const int16_t* bs = x.bsums + tok * (cols / 16) + size_t(b) * 16 + size_t(j) * 4;
        const int sumi = sc0 * dlo + sc1 * dhi;
        const int summ = m0 * (int(bs[0]) + int(bs[1])) + m1 * (int(bs[2]) + int(bs[3]));
        const float yd = x.d[tok * (cols / 256) + size_t(b)];
        return fmaf(-float(summ), dmin * yd, fmaf(float(sumi), d * yd, acc));
    }
};
template <>
struct Unit<WeightType::Q4_K> : UnitK45<WeightType::Q4_K> {};
template <>
struct Unit<WeightType::Q5_K> : UnitK45<WeightType::Q5_K> {};

// Q6_K x Q8_K: unit (half h, k) of a super-block is its elements 128h + 32k + l and
// 128h + 32(k+2) + l, l < 32: the low and high nibbles of ql[64h + 32k + l], with
// bits 2k and 2k+4 of qh[32h + l] on top; quants q - 32, a signed scale per 16.
template <>
struct Unit<WeightType::Q6_K> {
    I4 lo0, lo1, hi0, hi1;
    int s_lo0, s_lo1, s_hi0, s_hi1;
    float d;
    REPRISE_HD static int count(int cols) { return cols / 64; }
    REPRISE_HD void load(const DevWeight& w, int row, int u) {
        const int h = (u % 4) / 2, k = u % 2;
        const size_t blk_index = size_t(row) * (w.cols / 256) + size_t(u / 4);
        const int8_t* blk = w.qs + blk_index * kQ6KPackedBytes;
        const I4 ql0 = load16(blk + 64 * h + 32 * k), ql1 = load16(blk + 64 * h + 32 * k + 16);
        const I4 qh0 = load16(blk + 128 + 32 * h), qh1 = load16(blk + 128 + 32 * h + 16);
        auto bits = [](int v, int shift) { return int(((uint32_t(v) >> shift) & 0x03030303u) << 4); };
        const int a = 2 * k, b = 2 * k + 4;
        lo0 = sub_bytes(I4{(ql0.x & kLow) | bits(qh0.x, a), (ql0.y & kLow) | bits(qh0.y, a),
                           (ql0.z & kLow) | bits(qh0.z, a), (ql0.w & kLow) | bits(qh0.w, a)}, 0x20202020);
        lo1 = sub_bytes(I4{(ql1.x & kLow) | bits(qh1.x, a), (ql1.y & kLow) | bits(qh1.y, a),
                           (ql1.z & kLow) | bits(qh1.z, a), (ql1.w & kLow) | bits(qh1.w, a)}, 0x20202020);
        const I4 u0 = high_nibbles(ql0), u1 = high_nibbles(ql1);
        hi0 = sub_bytes(I4{u0.x | bits(qh0.x, b), u0.y | bits(qh0.y, b), u0.z | bits(qh0.z, b), u0.w | bits(qh0.w, b)},
                        0x20202020);
        hi1 = sub_bytes(I4{u1.x | bits(qh1.x, b), u1.y | bits(qh1.y, b), u1.z | bits(qh1.z, b), u1.w | bits(qh1.w, b)},
                        0x20202020);
        const int8_t* sc = blk + 192 + 8 * h + 2 * k;
        s_lo0 = sc[0], s_lo1 = sc[1], s_hi0 = sc[4], s_hi1 = sc[5];
        d = half_to_float(w.d[blk_index]);
    }
    REPRISE_HD float dot(const DevQ8& x, size_t tok, int cols, int u, float acc) const {
        const int h = (u % 4) / 2, k = u % 2, b = u / 4;
        const int8_t* xq = x.qs + tok * cols + size_t(b) * 256 + size_t(128 * h + 32 * k);
        const int sumi = s_lo0 * dot16(lo0, load16(xq), 0) + s_lo1 * dot16(lo1, load16(xq + 16), 0) +
                         s_hi0 * dot16(hi0, load16(xq + 64), 0) + s_hi1 * dot16(hi1, load16(xq + 80), 0);
        return fmaf(float(sumi), d * x.d[tok * (cols / 256) + size_t(b)], acc);
    }
};

// Single float operations rounded on their own (no fused multiply-add), as the CPU's
// dequantizers compute them.
REPRISE_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
REPRISE_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

// Element c of row `row`, dequantized as ggml's dequantize_row_<type> computes it (same
// operations in the same order, so bit for bit): the embedding lookup's arithmetic.
REPRISE_HD float dequant_element(const DevWeight& w, int row, int c) {
    const size_t r = size_t(row), cols = size_t(w.cols);
    const uint8_t* qs = reinterpret_cast<const uint8_t*>(w.qs);
    switch (w.type) {
    case WeightType::F32: return w.f[r * cols + size_t(c)];
    case WeightType::Q8_0: return float(w.qs[r * cols + size_t(c)]) * half_to_float(w.d[r * (cols / 32) + size_t(c / 32)]);
    case WeightType::Q4_0:
    case WeightType::Q4_1:
    case WeightType::Q5_0:
    case WeightType::Q5_1: {
        const size_t b = r * (cols / 32) + size_t(c / 32);
        const int j = c % 32;
        const uint8_t byte = qs[b * 16 + size_t(j % 16)];
        int q = j < 16 ? (byte & 0x0F) : (byte >> 4);
        if (w.type == WeightType::Q5_0 || w.type == WeightType::Q5_1) q |= int((w.qh[b] >> j) & 1u) << 4;
        const float d = half_to_float(w.d[b]);
        if (w.type == WeightType::Q4_0) return float(q - 8) * d;
        if (w.type == WeightType::Q5_0) return float(q - 16) * d;
        return add_rn(mul_rn(float(q), d), half_to_float(w.m[b]));  // x0 * d + m
    }
    case WeightType::Q4_K:
    case WeightType::Q5_K: {
        const bool q5 = w.type == WeightType::Q5_K;
        const uint8_t* blk = qs + (r * (cols / 256) + size_t(c / 256)) * (q5 ? 176 : 144);
        const int e = c % 256, j = e / 64, hi = (e % 64) / 32, l = e % 32, sub = 2 * j + hi;
        uint32_t words[4];
        std::memcpy(words, blk, 16);
        int sc, m;
        scale_min_k4(sub, words[1], words[2], words[3], &sc, &m);
        const uint8_t byte = blk[(q5 ? 48 : 16) + 32 * j + l];
        int q = hi ? (byte >> 4) : (byte & 0x0F);
        if (q5 && (blk[16 + l] >> sub) & 1) q += 16;
        const float d1 = mul_rn(half_to_float(words[0] & 0xFFFFu), float(sc));
        const float m1 = mul_rn(half_to_float(words[0] >> 16), float(m));
        return add_rn(mul_rn(d1, float(q)), -m1);  // d1 * q - m1
    }
    case WeightType::Q6_K: {
        const size_t bi = r * (cols / 256) + size_t(c / 256);
        const uint8_t* blk = qs + bi * kQ6KPackedBytes;
        const int e = c % 256, h = e / 128, kk = (e % 128) / 32, l = e % 32;
        const uint8_t byte = blk[64 * h + 32 * (kk & 1) + l];
        const int nib = kk < 2 ? (byte & 0x0F) : (byte >> 4);
        const int q = (nib | (((blk[128 + 32 * h + l] >> (2 * kk)) & 3) << 4)) - 32;
        const int sc = int8_t(blk[192 + 8 * h + l / 16 + 2 * kk]);
        return mul_rn(mul_rn(half_to_float(w.d[bi]), float(sc)), float(q));  // d * sc * q
    }
    }
    return 0.0f;
}

// One lane's share of a row against tokens t0 .. t0 + n_tok - 1 (NT at most): units
// lane, lane + 32, ... in order. The kernels then sum the 32 lanes with warp_sum.
template <WeightType T, int NT>
REPRISE_HD void lane_dot(const DevWeight& w, const DevQ8& x, int row, int t0, int n_tok, int lane, float (&acc)[NT]) {
REPRISE_UNROLL
    for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
    const int n_units = Unit<T>::count(w.cols);
    for (int u = lane; u < n_units; u += 32) {
        Unit<T> wu;
        wu.load(w, row, u);
REPRISE_UNROLL
        for (int t = 0; t < NT; ++t) {
            if (t >= n_tok) break;
            acc[t] = wu.dot(x, size_t(t0 + t), w.cols, u, acc[t]);
        }
    }
}

}  // namespace reprise::engine::cuda::units
