#include "engine/ggml_types.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace reprise::engine {

namespace {

// Indexed by the type id; gaps are ids ggml retired (4, 5: Q4_2/Q4_3) or never used.
constexpr GgmlTypeTraits kTraits[] = {
    /* 0 */ {"F32", 1, 4, true},
    /* 1 */ {"F16", 1, 2, true},
    /* 2 */ {"Q4_0", 32, 18, true},
    /* 3 */ {"Q4_1", 32, 20, true},
    /* 4 */ {nullptr, 0, 0, false},
    /* 5 */ {nullptr, 0, 0, false},
    /* 6 */ {"Q5_0", 32, 22, true},
    /* 7 */ {"Q5_1", 32, 24, true},
    /* 8 */ {"Q8_0", 32, 34, true},
    /* 9 */ {"Q8_1", 32, 36, false},
    /* 10 */ {"Q2_K", 256, 84, false},
    /* 11 */ {"Q3_K", 256, 110, false},
    /* 12 */ {"Q4_K", 256, 144, true},
    /* 13 */ {"Q5_K", 256, 176, true},
    /* 14 */ {"Q6_K", 256, 210, true},
    /* 15 */ {"Q8_K", 256, 292, false},
    /* 16 */ {"IQ2_XXS", 256, 66, false},
    /* 17 */ {"IQ2_XS", 256, 74, false},
    /* 18 */ {"IQ3_XXS", 256, 98, false},
    /* 19 */ {"IQ1_S", 256, 50, false},
    /* 20 */ {"IQ4_NL", 32, 18, false},
    /* 21 */ {"IQ3_S", 256, 110, false},
    /* 22 */ {"IQ2_S", 256, 82, false},
    /* 23 */ {"IQ4_XS", 256, 136, false},
    /* 24 */ {"I8", 1, 1, false},
    /* 25 */ {"I16", 1, 2, false},
    /* 26 */ {"I32", 1, 4, false},
    /* 27 */ {"I64", 1, 8, false},
    /* 28 */ {"F64", 1, 8, false},
    /* 29 */ {"IQ1_M", 256, 56, false},
    /* 30 */ {"BF16", 1, 2, true},
};
constexpr GgmlTypeTraits kUnknown = {nullptr, 0, 0, false};

uint32_t f2u(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
float u2f(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

}  // namespace

const GgmlTypeTraits& ggml_type_traits(uint32_t type) {
    return type < sizeof(kTraits) / sizeof(kTraits[0]) ? kTraits[type] : kUnknown;
}

std::string_view ggml_type_name(uint32_t type) {
    const char* n = ggml_type_traits(type).name;
    return n ? n : "unknown";
}

bool ggml_type_supported(uint32_t type) { return ggml_type_traits(type).supported; }

bool ggml_row_size(uint32_t type, uint64_t n, uint64_t* out) {
    const auto& t = ggml_type_traits(type);
    if (!t.name || t.block_size == 0 || n % t.block_size != 0) return false;
    return !__builtin_mul_overflow(n / t.block_size, uint64_t{t.type_size}, out);
}

// The FP16 conversions are the branch-free ones ggml uses without F16C (from the
// FP16 library); with F16C ggml gets the same round-to-nearest-even results.
float fp16_to_fp32(uint16_t h) {
    const uint32_t w = uint32_t{h} << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const float normalized = u2f((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float denormalized = u2f((two_w >> 17) | (126u << 23)) - 0.5f;
    const uint32_t r = sign | (two_w < (1u << 27) ? f2u(denormalized) : f2u(normalized));
    return u2f(r);
}

uint16_t fp32_to_fp16(float f) {
    float base = (std::fabs(f) * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = f2u(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = u2f((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f2u(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

float bf16_to_fp32(uint16_t h) { return u2f(uint32_t{h} << 16); }

uint16_t fp32_to_bf16(float f) {
    const uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64);  // quiet NaN
    return static_cast<uint16_t>((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

void dequantize_row_f16(const uint16_t* x, float* y, int64_t k) {
    for (int64_t i = 0; i < k; ++i) y[i] = fp16_to_fp32(x[i]);
}

void dequantize_row_bf16(const uint16_t* x, float* y, int64_t k) {
    for (int64_t i = 0; i < k; ++i) y[i] = bf16_to_fp32(x[i]);
}

void quantize_row_f16(const float* x, uint16_t* y, int64_t k) {
    for (int64_t i = 0; i < k; ++i) y[i] = fp32_to_fp16(x[i]);
}

void quantize_row_bf16(const float* x, uint16_t* y, int64_t k) {
    for (int64_t i = 0; i < k; ++i) y[i] = fp32_to_bf16(x[i]);
}

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t k) {
    for (int64_t i = 0; i < k / kQK8_0; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < kQK8_0; ++j) y[i * kQK8_0 + j] = x[i].qs[j] * d;
    }
}

// Low nibbles hold elements 0..15 of a block, high nibbles 16..31.
void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t k) {
    for (int64_t i = 0; i < k / kQK4_0; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < kQK4_0 / 2; ++j) {
            y[i * kQK4_0 + j] = ((x[i].qs[j] & 0x0F) - 8) * d;
            y[i * kQK4_0 + j + kQK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

// ggml's quantize_row_q8_0_ref: d = amax/127, q = round(x/d) (roundf: half away from 0).
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t k) {
    for (int64_t i = 0; i < k / kQK8_0; ++i) {
        float amax = 0.0f;
        for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[i * kQK8_0 + j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < kQK8_0; ++j) y[i].qs[j] = static_cast<int8_t>(std::roundf(x[i * kQK8_0 + j] * id));
    }
}

// ggml's quantize_row_q4_0_ref: d = (the value of largest magnitude) / -8, so that value
// maps to q = 0 exactly and the opposite extreme clamps at 15.
void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t k) {
    for (int64_t i = 0; i < k / kQK4_0; ++i) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQK4_0; ++j) {
            const float v = x[i * kQK4_0 + j];
            if (amax < std::fabs(v)) {
                amax = std::fabs(v);
                max = v;
            }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < kQK4_0 / 2; ++j) {
            const float x0 = x[i * kQK4_0 + j] * id;
            const float x1 = x[i * kQK4_0 + kQK4_0 / 2 + j] * id;
            const uint8_t xi0 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(x0 + 8.5f)));
            const uint8_t xi1 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(x1 + 8.5f)));
            y[i].qs[j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
        }
    }
}

bool dequantize_row(uint32_t type, const void* x, float* y, int64_t k) {
    const auto& t = ggml_type_traits(type);
    if (!t.supported || k < 0 || k % t.block_size != 0) return false;
    switch (static_cast<GgmlType>(type)) {
        case GgmlType::F32: std::memcpy(y, x, static_cast<size_t>(k) * 4); return true;
        case GgmlType::F16: dequantize_row_f16(static_cast<const uint16_t*>(x), y, k); return true;
        case GgmlType::BF16: dequantize_row_bf16(static_cast<const uint16_t*>(x), y, k); return true;
        case GgmlType::Q8_0: dequantize_row_q8_0(static_cast<const BlockQ8_0*>(x), y, k); return true;
        case GgmlType::Q4_0: dequantize_row_q4_0(static_cast<const BlockQ4_0*>(x), y, k); return true;
        case GgmlType::Q4_K: dequantize_row_q4_K(static_cast<const BlockQ4_K*>(x), y, k); return true;
        case GgmlType::Q4_1: dequantize_row_q4_1(static_cast<const BlockQ4_1*>(x), y, k); return true;
        case GgmlType::Q5_0: dequantize_row_q5_0(static_cast<const BlockQ5_0*>(x), y, k); return true;
        case GgmlType::Q5_1: dequantize_row_q5_1(static_cast<const BlockQ5_1*>(x), y, k); return true;
        case GgmlType::Q5_K: dequantize_row_q5_K(static_cast<const BlockQ5_K*>(x), y, k); return true;
        case GgmlType::Q6_K: dequantize_row_q6_K(static_cast<const BlockQ6_K*>(x), y, k); return true;
        default: return false;
    }
}

bool quantize_row(uint32_t type, const float* x, void* y, int64_t k) {
    const auto& t = ggml_type_traits(type);
    if (!t.supported || k < 0 || k % t.block_size != 0) return false;
    switch (static_cast<GgmlType>(type)) {
        case GgmlType::F32: std::memcpy(y, x, static_cast<size_t>(k) * 4); return true;
        case GgmlType::F16: quantize_row_f16(x, static_cast<uint16_t*>(y), k); return true;
        case GgmlType::BF16: quantize_row_bf16(x, static_cast<uint16_t*>(y), k); return true;
        case GgmlType::Q8_0: quantize_row_q8_0_ref(x, static_cast<BlockQ8_0*>(y), k); return true;
        case GgmlType::Q4_0: quantize_row_q4_0_ref(x, static_cast<BlockQ4_0*>(y), k); return true;
        case GgmlType::Q4_1: quantize_row_q4_1_ref(x, static_cast<BlockQ4_1*>(y), k); return true;
        case GgmlType::Q5_0: quantize_row_q5_0_ref(x, static_cast<BlockQ5_0*>(y), k); return true;
        case GgmlType::Q5_1: quantize_row_q5_1_ref(x, static_cast<BlockQ5_1*>(y), k); return true;
        case GgmlType::Q4_K: quantize_row_q4_K_ref(x, static_cast<BlockQ4_K*>(y), k); return true;
        case GgmlType::Q5_K: quantize_row_q5_K_ref(x, static_cast<BlockQ5_K*>(y), k); return true;
        case GgmlType::Q6_K: quantize_row_q6_K_ref(x, static_cast<BlockQ6_K*>(y), k); return true;
        default: return false;
    }
}

}  // namespace reprise::engine
