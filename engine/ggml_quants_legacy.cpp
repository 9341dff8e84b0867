// Q4_1, Q5_0, Q5_1 (weights) and Q8_1 (activations): ggml's scalar reference
// (de)quantizers (ggml-quants.c), bit for bit: the same float expressions in the same
// order, the same truncating casts and clamps (ggml rounds with "+ 0.5 then cast",
// except Q8_x which uses roundf), so files written here match llama-quantize's.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "engine/ggml_types.hpp"

namespace reprise::engine {

namespace {
constexpr int kQK = 32;  // every block type in this file holds 32 elements

// Block minimum and maximum, as ggml scans them (FLT_MAX / -FLT_MAX start).
void block_min_max(const float* x, float* min, float* max) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *min = lo;
    *max = hi;
}

// The signed value of largest magnitude (the first one on ties), as Q4_0/Q5_0 scale by it.
float block_signed_absmax(const float* x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j)
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    return max;
}

// Element j of a 5-bit block: low nibble of qs[j] (j < 16) or high nibble of qs[j - 16],
// bit j of qh as bit 4.
inline int q5_value(const uint8_t* qs, uint32_t qh, int j) {
    const int nib = j < kQK / 2 ? (qs[j] & 0x0F) : (qs[j - kQK / 2] >> 4);
    return nib | int((qh >> j) & 1u) << 4;
}
}  // namespace

void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t k) {
    for (int64_t i = 0; i < k / kQK; ++i) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        for (int j = 0; j < kQK / 2; ++j) {
            y[i * kQK + j] = float(x[i].qs[j] & 0x0F) * d + m;
            y[i * kQK + j + kQK / 2] = float(x[i].qs[j] >> 4) * d + m;
        }
    }
}

void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t k) {
    for (int64_t i = 0; i < k / kQK; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < kQK; ++j) y[i * kQK + j] = float(q5_value(x[i].qs, qh, j) - 16) * d;
    }
}

void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t k) {
    for (int64_t i = 0; i < k / kQK; ++i) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < kQK; ++j) y[i * kQK + j] = float(q5_value(x[i].qs, qh, j)) * d + m;
    }
}

// d = (max - min) / 15, m = min; q = min(15, trunc((x - min) / d + 0.5)).
void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t k) {
    for (int64_t i = 0; i < k / kQK; ++i) {
        const float* v = x + i * kQK;
        float min, max;
        block_min_max(v, &min, &max);
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        for (int j = 0; j < kQK / 2; ++j) {
            const uint8_t lo = uint8_t(std::min(15, int(int8_t((v[j] - min) * id + 0.5f))));
            const uint8_t hi = uint8_t(std::min(15, int(int8_t((v[j + kQK / 2] - min) * id + 0.5f))));
            y[i].qs[j] = uint8_t(lo | hi << 4);
        }
    }
}

// d = (signed absmax) / -16; q = min(31, trunc(x / d + 16.5)), so the extreme maps to 0.
void quantize_row_q5_0_ref(const float* x, BlockQ5_0* y, int64_t k) {
    for (int64_t i = 0; i < k / kQK; ++i) {
        const float* v = x + i * kQK;
        const float d = block_signed_absmax(v) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const uint8_t lo = uint8_t(std::min(31, int(int8_t(v[j] * id + 16.5f))));
            const uint8_t hi = uint8_t(std::min(31, int(int8_t(v[j + kQK / 2] * id + 16.5f))));
            y[i].qs[j] = uint8_t((lo & 0x0F) | (hi & 0x0F) << 4);
            qh |= uint32_t(lo >> 4) << j;
            qh |= uint32_t(hi >> 4) << (j + kQK / 2);
        }
        std::memcpy(y[i].qh, &qh, sizeof qh);
    }
}

// d = (max - min) / 31, m = min; q = trunc((x - min) / d + 0.5) (no clamp, as ggml).
void quantize_row_q5_1_ref(const float* x, BlockQ5_1* y, int64_t k) {
    for (int64_t i = 0; i < k / kQK; ++i) {
        const float* v = x + i * kQK;
        float min, max;
        block_min_max(v, &min, &max);
        const float d = (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const uint8_t lo = uint8_t((v[j] - min) * id + 0.5f);
            const uint8_t hi = uint8_t((v[j + kQK / 2] - min) * id + 0.5f);
            y[i].qs[j] = uint8_t((lo & 0x0F) | (hi & 0x0F) << 4);
            qh |= uint32_t((lo & 0x10u) >> 4) << j;
            qh |= uint32_t((hi & 0x10u) >> 4) << (j + kQK / 2);
        }
        std::memcpy(y[i].qh, &qh, sizeof qh);
    }
}

// As Q8_0 (d = amax / 127, q = roundf(x / d)), plus s = d * sum(q) for the weights'
// minimum term; both scales fp16.
void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t k) {
    for (int64_t i = 0; i < k / kQK; ++i) {
        const float* v = x + i * kQK;
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(v[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < kQK; ++j) {
            y[i].qs[j] = int8_t(std::roundf(v[j] * id));
            sum += y[i].qs[j];
        }
        y[i].s = fp32_to_fp16(float(sum) * d);
    }
}

}  // namespace reprise::engine
