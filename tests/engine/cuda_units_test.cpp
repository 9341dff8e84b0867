// The CUDA kernels' arithmetic, run on the host: engine/cuda/kernels/q_units.cuh is
// __host__ __device__ code, so the unit dots of every quantized type (what matvec_q and
// matmul_q compute per lane), the warp's fixed reduction tree and the embedding's
// dequantization are checked here against ggml's references, on any machine. The
// device runs the same source (cuda_test.cpp checks it equals this emulation bit for
// bit when a GPU is there).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tests/engine/cuda_emulate.hpp"

namespace reprise::engine {
namespace {

using namespace test;

constexpr int kRows = 13, kCols = 768, kTokens = 5;  // 3 super-blocks, 24 32-blocks: lanes left idle on purpose

TEST_CASE("cuda units: every quantized type's device layout dequantizes as dequantize_row, bit for bit") {
    for (GgmlType t : kQuantTypes) {
        CAPTURE(std::string(ggml_type_name(uint32_t(t))));
        HostWeight h;
        REQUIRE(make_host_weight(t, random_weight_blocks(t, kRows, kCols, 3), kRows, kCols, &h));
        CHECK(h.packed.bytes() == cuda::device_weight_bytes(t, kRows, kCols));  // the memory bound the model checks
        std::vector<float> want(kCols);
        for (int r = 0; r < kRows; ++r) {
            REQUIRE(dequantize_row(uint32_t(t), h.blocks.data() + size_t(r) * h.row_bytes, want.data(), kCols));
            int mismatches = 0;
            for (int c = 0; c < kCols; ++c) mismatches += cuda::units::dequant_element(h.w, r, c) != want[size_t(c)];
            CHECK(mismatches == 0);
        }
    }
}

TEST_CASE("cuda units: the unit dots equal the exact product of the dequantized values, whatever the tile") {
    for (GgmlType t : kQuantTypes) {
        CAPTURE(std::string(ggml_type_name(uint32_t(t))));
        HostWeight h;
        REQUIRE(make_host_weight(t, random_weight_blocks(t, kRows, kCols, 5), kRows, kCols, &h));
        HostAct x = random_act(cuda::act_format(h.w.type), kTokens, kCols, 6);
        const auto got = emulate_product(h.w, x.view(), kTokens);
        // Independent of the unit code: the element decoder (checked against ggml above)
        // times the activations, in double. The float sums of scaled unit terms round
        // at ~1e-7 of the terms' magnitudes: 1e-6 of sum |w x|.
        float worst = 0;
        for (int tk = 0; tk < kTokens; ++tk)
            for (int r = 0; r < kRows; ++r) {
                double exact = 0, magnitude = 0;
                for (int c = 0; c < kCols; ++c) {
                    const double p = double(cuda::units::dequant_element(h.w, r, c)) * x.values[size_t(tk) * kCols + size_t(c)];
                    exact += p, magnitude += std::fabs(p);
                }
                // Q8_1 carries sum(x) of a block as s, rounded to fp16, and the weights'
                // minimum multiplies that s (ggml's format): the reference uses it too.
                if (x.format == ActFormat::Q8_1)
                    for (int b = 0; b < kCols / 32; ++b) {
                        double sum = 0;
                        for (int c = 0; c < 32; ++c) sum += x.values[size_t(tk) * kCols + size_t(b) * 32 + size_t(c)];
                        const double m = cuda::units::half_to_float(h.w.m[size_t(r) * (kCols / 32) + size_t(b)]);
                        exact += m * (x.s[size_t(tk) * (kCols / 32) + size_t(b)] - sum);
                    }
                const double err = std::fabs(got[size_t(tk) * kRows + size_t(r)] - exact) / std::max(1.0, magnitude);
                worst = std::max(worst, float(err));
            }
        INFO("worst error relative to sum |w x|: " << worst);
        CHECK(worst <= 1e-6f);
        // Tiles of 8 and 3 tokens (matmul_q's and a partial one) give each token's
        // result bit for bit: the lanes' order does not depend on the tile.
        std::vector<float> tiled(got.size());
        emulate_rows_any<8>(h.w, x.view(), 0, kTokens, tiled.data());
        CHECK(tiled == got);
        emulate_rows_any<4>(h.w, x.view(), 2, 3, tiled.data() + 2 * kRows);
        CHECK(tiled == got);
    }
}

TEST_CASE("cuda units: the device's products against ggml's vec_dot references") {
    for (GgmlType t : kQuantTypes) {
        CAPTURE(std::string(ggml_type_name(uint32_t(t))));
        HostWeight h;
        REQUIRE(make_host_weight(t, random_weight_blocks(t, kRows, kCols, 7), kRows, kCols, &h));
        HostAct x = random_act(cuda::act_format(h.w.type), kTokens, kCols, 8);
        const auto got = emulate_product(h.w, x.view(), kTokens);
        // Both sides take the integer dots exactly and differ only in how the scaled
        // block terms are summed in float (ggml: block by block, or 8 running lanes for
        // the K-quants; the device: 32 lanes of units, then a tree): 1e-5 relative to
        // max(1, |y|), the tolerance of the Q8_0/Q4_0 device checks.
        float worst = 0;
        for (int tk = 0; tk < kTokens; ++tk)
            for (int r = 0; r < kRows; ++r) {
                const float want = vec_dot_ref(t, kCols, h.blocks.data() + size_t(r) * h.row_bytes, x.row_blocks(tk));
                const float err = std::fabs(got[size_t(tk) * kRows + size_t(r)] - want) / std::max(1.0f, std::fabs(want));
                if (!(err <= worst)) worst = err;
            }
        INFO("worst relative error: " << worst);
        CHECK(worst <= 1e-5f);
    }
}

}  // namespace
}  // namespace reprise::engine
