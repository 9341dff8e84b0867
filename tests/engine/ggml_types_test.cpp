// ggml element types: the size tables, FP16/BF16 conversions and the reference
// (de)quantizers, with expected values worked out from ggml's definitions.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/ggml_types.hpp"
#include "gguf_corpus_cases.hpp"

using namespace reprise::engine;

TEST_CASE("ggml types: row sizes") {
    uint64_t n = 0;
    CHECK(ggml_row_size(0, 10, &n));
    CHECK(n == 40);
    CHECK(ggml_row_size(1, 10, &n));
    CHECK(n == 20);
    CHECK(ggml_row_size(30, 3, &n));
    CHECK(n == 6);
    CHECK(ggml_row_size(8, 64, &n));
    CHECK(n == 68);
    CHECK(ggml_row_size(2, 96, &n));
    CHECK(n == 54);
    CHECK(ggml_row_size(12, 512, &n));
    CHECK(n == 288);
    CHECK_FALSE(ggml_row_size(8, 33, &n));       // not a whole block
    CHECK_FALSE(ggml_row_size(4, 32, &n));       // retired id
    CHECK_FALSE(ggml_row_size(999, 32, &n));     // unknown id
    CHECK_FALSE(ggml_row_size(0, ~0ull / 2, &n));  // overflow
    CHECK(ggml_type_name(8) == "Q8_0");
    CHECK(ggml_type_supported(12));
    CHECK(ggml_type_supported(14));        // Q6_K
    CHECK_FALSE(ggml_type_supported(10));  // Q2_K: known to ggml, not supported here
    CHECK_FALSE(ggml_type_supported(20));  // IQ4_NL
}

TEST_CASE("ggml types: fp16 and bf16") {
    CHECK(fp32_to_fp16(1.0f) == 0x3C00);
    CHECK(fp32_to_fp16(-2.0f) == 0xC000);
    CHECK(fp32_to_fp16(65504.0f) == 0x7BFF);
    CHECK(fp32_to_fp16(1e6f) == 0x7C00);                 // overflow to inf
    CHECK(fp32_to_fp16(5.9604645e-8f) == 0x0001);        // smallest subnormal
    CHECK(fp32_to_fp16(1.0f + 1.0f / 2048) == 0x3C00);   // tie: round to even
    CHECK(fp32_to_fp16(1.0f + 3.0f / 2048) == 0x3C02);   // tie: round to even (up)
    CHECK((fp32_to_fp16(NAN) & 0x7C00) == 0x7C00);
    CHECK(fp16_to_fp32(0x3C00) == 1.0f);
    CHECK(fp16_to_fp32(0x0001) == 5.9604645e-8f);
    CHECK(std::isinf(fp16_to_fp32(0xFC00)));
    for (uint32_t h = 0; h < 0x10000; ++h) {  // every finite half survives a round trip
        if ((h & 0x7C00) == 0x7C00) continue;
        const uint16_t back = fp32_to_fp16(fp16_to_fp32(static_cast<uint16_t>(h)));
        if (back != h) FAIL_CHECK("half " << h << " -> " << back);
    }
    CHECK(fp32_to_bf16(1.0f) == 0x3F80);
    CHECK(fp32_to_bf16(1.00390625f) == 0x3F80);  // halfway: even
    CHECK(fp32_to_bf16(1.01171875f) == 0x3F82);  // halfway: even (up)
    CHECK(bf16_to_fp32(0x4049) == 3.140625f);
}

TEST_CASE("ggml types: Q8_0 reference quantizer") {
    std::vector<float> x(32);
    for (int i = 0; i < 32; ++i) x[i] = (i - 16) * 0.25f;  // amax = 4 at i = 0
    BlockQ8_0 b;
    quantize_row_q8_0_ref(x.data(), &b, 32);
    CHECK(fp16_to_fp32(b.d) == doctest::Approx(4.0f / 127).epsilon(1e-3));
    CHECK(b.qs[0] == -127);
    CHECK(b.qs[16] == 0);
    CHECK(b.qs[17] == 8);  // 0.25 / (4/127) = 7.94 -> 8
    std::vector<float> y(32);
    dequantize_row_q8_0(&b, y.data(), 32);
    for (int i = 0; i < 32; ++i) CHECK(y[i] == doctest::Approx(x[i]).epsilon(0.02));
    // All zeros: d = 0 and q = 0, no division by zero.
    std::vector<float> z(32, 0.0f);
    quantize_row_q8_0_ref(z.data(), &b, 32);
    CHECK(b.d == 0);
    CHECK(b.qs[5] == 0);
}

TEST_CASE("ggml types: Q4_0 reference quantizer and nibble order") {
    std::vector<float> x(32, 0.0f);
    x[0] = -8.0f;  // largest magnitude, negative: d = -8 / -8 = 1
    x[1] = 7.0f;
    x[16] = 3.0f;
    x[31] = 7.6f;  // 7.6 + 8.5 = 16.1 -> clamped to 15
    BlockQ4_0 b;
    quantize_row_q4_0_ref(x.data(), &b, 32);
    CHECK(fp16_to_fp32(b.d) == 1.0f);
    CHECK((b.qs[0] & 0x0F) == 0);   // element 0: -8 + 8
    CHECK((b.qs[0] >> 4) == 11);    // element 16: 3 + 8
    CHECK((b.qs[1] & 0x0F) == 15);  // element 1: 7 + 8
    CHECK((b.qs[15] >> 4) == 15);   // element 31: clamped
    CHECK((b.qs[2] & 0x0F) == 8);   // zero
    std::vector<float> y(32);
    dequantize_row_q4_0(&b, y.data(), 32);
    CHECK(y[0] == -8.0f);
    CHECK(y[1] == 7.0f);
    CHECK(y[16] == 3.0f);
    CHECK(y[31] == 7.0f);
    CHECK(y[2] == 0.0f);
    // Positive largest value: d is negative, and the maximum maps to q = 0.
    std::vector<float> p(32, 1.0f);
    p[3] = 16.0f;
    quantize_row_q4_0_ref(p.data(), &b, 32);
    CHECK(fp16_to_fp32(b.d) == -2.0f);
    CHECK((b.qs[3] & 0x0F) == 0);
    dequantize_row_q4_0(&b, y.data(), 32);
    CHECK(y[3] == 16.0f);
    CHECK(y[0] == 0.0f);  // 1 * (1/-2) + 8.5 = 8.0 -> q 8 -> 0: Q4_0 is coarse, as in ggml
}

TEST_CASE("ggml types: quantization error on random rows") {
    const auto x = engine_test::test_floats(4096, 7);
    std::vector<BlockQ8_0> q8(4096 / 32);
    std::vector<BlockQ4_0> q4(4096 / 32);
    std::vector<float> y8(4096), y4(4096);
    quantize_row_q8_0_ref(x.data(), q8.data(), 4096);
    quantize_row_q4_0_ref(x.data(), q4.data(), 4096);
    CHECK(dequantize_row(8, q8.data(), y8.data(), 4096));
    CHECK(dequantize_row(2, q4.data(), y4.data(), 4096));
    double e8 = 0, e4 = 0;
    for (int i = 0; i < 4096; ++i) {
        e8 = std::max(e8, double(std::fabs(y8[i] - x[i])));
        e4 = std::max(e4, double(std::fabs(y4[i] - x[i])));
    }
    CHECK(e8 < 1.0 / 127 * 0.51 + 1e-3);  // half a step of amax/127 (amax <= 1), fp16 d
    CHECK(e4 < 1.0 / 8 + 1e-3);           // one step of amax/8 at the clamped end
    CHECK_FALSE(dequantize_row(10, q8.data(), y8.data(), 256));  // Q2_K: unsupported
    CHECK_FALSE(dequantize_row(8, q8.data(), y8.data(), 33));
}

TEST_CASE("ggml types: Q4_K dequantization") {
    BlockQ4_K b;
    std::memset(&b, 0, sizeof(b));
    b.d = fp32_to_fp16(0.5f);
    b.dmin = fp32_to_fp16(0.25f);
    // Sub-blocks 0..3 use the low 6 bits of scales[0..3] / mins scales[4..7].
    b.scales[0] = 2, b.scales[4] = 4;  // sub-block 0: scale 1.0, min 1.0
    b.scales[1] = 6, b.scales[5] = 0;  // sub-block 1: scale 3.0, min 0
    // Sub-blocks 4..7 pack 4+2 bits: scale 4 = (scales[8] & 15) | (scales[0] >> 6) << 4.
    b.scales[8] = 0x13;                // sub-block 4: scale 3 -> 1.5, min 1 -> 0.25
    for (int l = 0; l < 32; ++l) b.qs[l] = static_cast<uint8_t>((l % 16) | (5 << 4));
    b.qs[64] = 0x0A;  // element 128 (sub-block 4): 10
    std::vector<float> y(256);
    CHECK(dequantize_row(12, &b, y.data(), 256));
    CHECK(y[0] == 0.0f * 1.0f - 1.0f);
    CHECK(y[3] == 3.0f - 1.0f);
    CHECK(y[32] == 5 * 3.0f);  // high nibbles of the first 32 bytes are sub-block 1
    CHECK(y[128] == 10 * 1.5f - 0.25f);
}
