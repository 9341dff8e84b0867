// The older 32-blocks (Q4_1, Q5_0, Q5_1) and Q8_1 activations: ggml's reference
// (de)quantizers bit for bit (fixed vectors produced by ggml itself), round-trip error
// bounds, and the kernels: scalar reference == ggml's generic dot bits, SIMD one-token
// dot == tiled prefill bit for bit over every ISA path, tile shape and thread split, and
// both against the dequantized weights and activations with stated tolerances.
#include <doctest/doctest.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/ggml_types.hpp"
#include "engine/kernels/cpu.hpp"
#include "engine/kernels/matmul_q4_1.hpp"
#include "engine/kernels/matmul_q5_0.hpp"
#include "engine/kernels/matmul_q5_1.hpp"
#include "engine/kernels/matmul_quant.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_writer.hpp"
#include "engine/model.hpp"
#include "engine/model_maker.hpp"
#include "engine/thread_pool.hpp"
#include "fixtures.hpp"
#include "llama_ref.hpp"
#include "random_vectors.hpp"

using namespace reprise::engine;

namespace {
using test::Lcg;
using test::randv;

// The fixed vectors: two blocks of weights (mixed signs with ties; positive with an
// outlier) and two of activations. The expected bytes and dot products below were
// produced by ggml itself (node-llama-cpp 3.22.1's libggml-base.so quantize_row_*_ref,
// and libggml-cpu-sse42.so's ggml_vec_dot_*_generic, which has no FMA contraction).
void fixed_weights(float* x) {
    for (int j = 0; j < 32; ++j) x[j] = float((j * 37) % 61 - 30) / 8.0f;
    for (int j = 0; j < 32; ++j) x[32 + j] = j == 5 ? 9.75f : float(j) * 0.0625f + 0.5f;
}
void fixed_activations(float* y) {
    for (int j = 0; j < 64; ++j) y[j] = float((j * 13) % 29 - 14) / 16.0f;
}
constexpr uint8_t kQ4_1[40] = {0x00, 0x38, 0x80, 0xc3, 0xb0, 0x59, 0xe3, 0x8d, 0x27, 0xb1, 0x5a, 0xf4, 0x9d, 0x37, 0xc1, 0x6a,
    0xf4, 0x9e, 0x38, 0xc2, 0xef, 0x38, 0x00, 0x38, 0x20, 0x20, 0x20, 0x20, 0x20, 0x2f, 0x21, 0x21,
    0x21, 0x31, 0x31, 0x31, 0x31, 0x31, 0x31, 0x32};
constexpr uint8_t kQ5_0[44] = {0x80, 0x33, 0x4a, 0x69, 0xad, 0xb5, 0x70, 0xa4, 0xe7, 0x1b, 0x4e, 0x81, 0xb5, 0xf8, 0x2c, 0x5f,
    0x92, 0xc6, 0xf9, 0x3d, 0x60, 0xa3, 0xe0, 0xb8, 0x00, 0x00, 0x00, 0x00, 0xef, 0xdf, 0xdf, 0xdf,
    0xdf, 0xd0, 0xdf, 0xde, 0xde, 0xde, 0xde, 0xce, 0xce, 0xce, 0xce, 0xce};
constexpr uint8_t kQ5_1[48] = {0xbe, 0x33, 0x80, 0xc3, 0x4a, 0x69, 0xad, 0xb5, 0x60, 0xa3, 0xd7, 0x1a, 0x4d, 0x71, 0xb4, 0xe8,
    0x2b, 0x5e, 0x82, 0xc5, 0xf9, 0x3c, 0x60, 0x93, 0xc6, 0x34, 0x00, 0x38, 0x20, 0x00, 0x00, 0x00,
    0x30, 0x40, 0x40, 0x41, 0x41, 0x4f, 0x51, 0x51, 0x52, 0x52, 0x52, 0x62, 0x63, 0x63, 0x63, 0x63};
constexpr uint8_t kQ8_1[72] = {0x0e, 0x1f, 0xf4, 0xb1, 0x81, 0xf7, 0x6d, 0xdc, 0x52, 0xc0, 0x36, 0xa5, 0x1b, 0x8a, 0x00, 0x76,
    0xe5, 0x5b, 0xca, 0x40, 0xae, 0x24, 0x93, 0x09, 0x7f, 0xee, 0x64, 0xd3, 0x49, 0xb7, 0x2d, 0x9c,
    0x12, 0x81, 0xf7, 0x6d, 0x0e, 0x1f, 0xf0, 0xaf, 0xdc, 0x52, 0xc0, 0x36, 0xa5, 0x1b, 0x8a, 0x00,
    0x76, 0xe5, 0x5b, 0xca, 0x40, 0xae, 0x24, 0x93, 0x09, 0x7f, 0xee, 0x64, 0xd3, 0x49, 0xb7, 0x2d,
    0x9c, 0x12, 0x81, 0xf7, 0x6d, 0xdc, 0x52, 0xc0};

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
constexpr double kHalfEps = 1.0 / 2048;  // fp16's relative rounding error bound (2^-11)
}  // namespace

TEST_CASE("legacy quants: quantizers and dequantizers are ggml's, bit for bit (fixed vectors)") {
    float x[64], y[64];
    fixed_weights(x);
    fixed_activations(y);
    BlockQ4_1 q41[2];
    BlockQ5_0 q50[2];
    BlockQ5_1 q51[2];
    BlockQ8_1 q81[2];
    quantize_row_q4_1_ref(x, q41, 64);
    quantize_row_q5_0_ref(x, q50, 64);
    quantize_row_q5_1_ref(x, q51, 64);
    quantize_row_q8_1_ref(y, q81, 64);
    CHECK(std::memcmp(q41, kQ4_1, sizeof q41) == 0);
    CHECK(std::memcmp(q50, kQ5_0, sizeof q50) == 0);
    CHECK(std::memcmp(q51, kQ5_1, sizeof q51) == 0);
    CHECK(std::memcmp(q81, kQ8_1, sizeof q81) == 0);
    // The generic quantize_row dispatch reaches the same functions.
    BlockQ5_0 via[2];
    REQUIRE(quantize_row(uint32_t(GgmlType::Q5_0), x, via, 64));
    CHECK(std::memcmp(via, kQ5_0, sizeof via) == 0);
    // Dequantizing: spot values worked out by hand from the stored bytes. Q4_1 block 1
    // (min 0.5, max 9.75): d = fp16(9.25 / 15), m = 0.5; element 5 (low nibble of
    // qs[5] = 0x2f) is 15 -> the max, element 16 (high nibble of qs[0] = 0x20) is 2,
    // element 0 (its low nibble) 0 -> m.
    float d[64];
    dequantize_row_q4_1(q41, d, 64);
    const float d41 = fp16_to_fp32(q41[1].d);
    CHECK(std::fabs(d41 - 9.25 / 15) <= 9.25 / 15 * kHalfEps);
    CHECK(fp16_to_fp32(q41[1].m) == 0.5f);
    CHECK(d[32 + 5] == 15.0f * d41 + 0.5f);
    CHECK(d[32 + 16] == 2.0f * d41 + 0.5f);
    CHECK(d[32 + 0] == 0.5f);
    // Q5_0 block 1: the value of largest magnitude, 9.75, sets d = 9.75 / -16 = -0.609375
    // (exact in fp16) and maps to q = 0 exactly: -16 * d = 9.75. Element 6 (0.875):
    // q = trunc(0.875 / d + 16.5) = trunc(15.06) = 15 -> -1 * d = 0.609375.
    dequantize_row_q5_0(q50, d, 64);
    CHECK(fp16_to_fp32(q50[1].d) == -0.609375f);
    CHECK(d[32 + 5] == 9.75f);
    CHECK(d[32 + 6] == 0.609375f);
    dequantize_row_q5_1(q51, d, 64);
    CHECK(d[32 + 5] == float(31) * fp16_to_fp32(q51[1].d) + fp16_to_fp32(q51[1].m));  // the max: q = 31
    // The reference dots, as ggml's generic ones to the bit.
    BlockQ8_0 q80[2];
    quantize_row_q8_0_ref(y, q80, 64);
    CHECK(bits(vec_dot_q4_1_q8_1_ref(64, q41, q81)) == 0x40802f06u);
    CHECK(bits(vec_dot_q5_0_q8_0_ref(64, q50, q80)) == 0x40b6fc02u);
    CHECK(bits(vec_dot_q5_1_q8_1_ref(64, q51, q81)) == 0x40947fb1u);
}

TEST_CASE("legacy quants: round trips within the stated bounds") {
    // Per block: Q4_1 / Q5_1 step d = (max - min) / (2^b - 1), error at most d / 2 plus
    // the fp16 rounding of d (times q <= 2^b - 1) and of m. Q5_0 step d = amax / 16:
    // the extreme maps exactly to q = 0 (-16 d), but a value of the other sign near amax
    // clamps at q = 31 (+15 d), so up to d, plus 16 fp16 roundings of d. Q8_1 as Q8_0:
    // d = amax / 127, error d / 2 plus 127 fp16 roundings of d; and s = d * sum(q) in
    // fp16. An fp16 rounding of v is at most |v| 2^-11, or 2^-25 (half the subnormal
    // spacing) where v is below fp16's normal range (the 1e-4 scale gets there).
    auto r16 = [](double v) { return std::fabs(v) * kHalfEps + 0x1p-25; };
    for (int n : {32, 96, 896}) {
        for (float scale : {1e-4f, 1.0f, 300.0f}) {
            CAPTURE(n);
            CAPTURE(scale);
            auto x = randv(size_t(n), uint64_t(n) + 7, scale);
            x[3] = 0.5f * scale;  // a few repeated values and an exact zero block member
            x[4] = 0.5f * scale;
            x[9] = 0.0f;
            const int nb = n / 32;
            std::vector<BlockQ4_1> q41(static_cast<size_t>(nb));
            std::vector<BlockQ5_0> q50(static_cast<size_t>(nb));
            std::vector<BlockQ5_1> q51(static_cast<size_t>(nb));
            std::vector<BlockQ8_1> q81(static_cast<size_t>(nb));
            quantize_row_q4_1_ref(x.data(), q41.data(), n);
            quantize_row_q5_0_ref(x.data(), q50.data(), n);
            quantize_row_q5_1_ref(x.data(), q51.data(), n);
            quantize_row_q8_1_ref(x.data(), q81.data(), n);
            std::vector<float> d41(static_cast<size_t>(n)), d50(static_cast<size_t>(n)), d51(static_cast<size_t>(n));
            dequantize_row_q4_1(q41.data(), d41.data(), n);
            dequantize_row_q5_0(q50.data(), d50.data(), n);
            dequantize_row_q5_1(q51.data(), d51.data(), n);
            for (int b = 0; b < nb; ++b) {
                double mn = 1e30, mx = -1e30, amax = 0;
                for (int j = 0; j < 32; ++j) {
                    const double v = x[size_t(b * 32 + j)];
                    mn = std::min(mn, v), mx = std::max(mx, v), amax = std::max(amax, std::fabs(v));
                }
                const double s4 = (mx - mn) / 15, s5 = (mx - mn) / 31, s50 = amax / 16, s8 = amax / 127;
                const double b41 = s4 * 0.5 + 15 * r16(s4) + r16(mn) + 1e-12;
                const double b51 = s5 * 0.5 + 31 * r16(s5) + r16(mn) + 1e-12;
                const double b50 = s50 + 16 * r16(s50) + 1e-12;
                const double b81 = s8 * 0.5 + 127 * r16(s8) + 1e-12;
                int sum = 0;
                for (int j = 0; j < 32; ++j) {
                    const size_t i = size_t(b * 32 + j);
                    CHECK(std::fabs(d41[i] - x[i]) <= b41);
                    CHECK(std::fabs(d51[i] - x[i]) <= b51);
                    CHECK(std::fabs(d50[i] - x[i]) <= b50);
                    CHECK(std::fabs(q81[size_t(b)].qs[j] * double(fp16_to_fp32(q81[size_t(b)].d)) - x[i]) <= b81);
                    sum += q81[size_t(b)].qs[j];
                }
                // s = fp16(d * sum) from the unrounded d; against the rounded d: 2 roundings.
                const double s = double(fp16_to_fp32(q81[size_t(b)].d)) * sum;
                CHECK(std::fabs(fp16_to_fp32(q81[size_t(b)].s) - s) <= r16(s) * 1.001 + std::abs(sum) * r16(s8) + 1e-12);
            }
        }
    }
    // A constant block: d = 0 (no division by zero), every value is m exactly.
    std::vector<float> c(32, 0.75f), back(32);
    BlockQ5_1 q;
    quantize_row_q5_1_ref(c.data(), &q, 32);
    dequantize_row_q5_1(&q, back.data(), 32);
    CHECK(q.d == 0);
    CHECK(back == c);
}

namespace {
// One weight type's kernels, as the tests drive them.
template <class W, class A>
struct Kernel {
    const char* name;
    void (*quantize_w)(const float*, W*, int64_t);
    void (*dequantize_w)(const W*, float*, int64_t);
    void (*quantize_a)(const float*, A*, int64_t);
    float (*ref)(int, const W*, const A*);
    float (*simd)(int, const W*, const A*);
    void (*matmul)(const W*, int, int, const A*, int, float*, ThreadPool*);
};

void dequantize_q8_0_act(const BlockQ8_0* x, float* y, int64_t k) { dequantize_row_q8_0(x, y, k); }
void dequantize_q8_1_act(const BlockQ8_1* x, float* y, int64_t k) {
    for (int64_t b = 0; b < k / 32; ++b)
        for (int j = 0; j < 32; ++j) y[b * 32 + j] = x[b].qs[j] * fp16_to_fp32(x[b].d);
}
float min_term(const BlockQ5_0&, const BlockQ8_0&) { return 0.0f; }
template <class W>
float min_term(const W& w, const BlockQ8_1&) { return fp16_to_fp32(w.m); }
double act_sum_bound(const BlockQ8_0&) { return 0.0; }
// Q8_1's s is d * sum(q) rounded to fp16 on its own, from the unrounded d: against the
// dequantized activations (which use the fp16 d) it is off by up to 2 fp16 roundings.
double act_sum_bound(const BlockQ8_1& a) {
    int sum = 0;
    for (int j = 0; j < 32; ++j) sum += a.qs[j];
    return 2.0 * kHalfEps * std::fabs(double(sum) * fp16_to_fp32(a.d)) * 1.001;
}

// Double-precision dot of the dequantized row and token, its magnitude sum |w * x|, and
// the bound the Q8_1 s rounding adds (sum over blocks of |m| * that bound).
template <class W, class A>
void dequantized_dot(const Kernel<W, A>& k, const W* w, const A* a, int cols, double* dot, double* mag, double* extra) {
    std::vector<float> dw(static_cast<size_t>(cols)), da(static_cast<size_t>(cols));
    k.dequantize_w(w, dw.data(), cols);
    if constexpr (std::is_same_v<A, BlockQ8_0>)
        dequantize_q8_0_act(a, da.data(), cols);
    else
        dequantize_q8_1_act(a, da.data(), cols);
    *dot = *mag = *extra = 0;
    for (int c = 0; c < cols; ++c) {
        *dot += double(dw[size_t(c)]) * da[size_t(c)];
        *mag += std::fabs(double(dw[size_t(c)]) * da[size_t(c)]);
    }
    for (int b = 0; b < cols / 32; ++b) *extra += std::fabs(min_term(w[b], a[b])) * act_sum_bound(a[b]);
}

template <class W, class A>
void check_dots(const Kernel<W, A>& k) {
    // One-token dots. Integer block sums are exact; only the per-block float scaling and
    // the sum over blocks round (in float, ~n/32 roundings of partial sums), so both the
    // reference and the SIMD dot lie within 1e-6 of sum |w*x| of the dequantized dot
    // (plus, for Q8_1, the fp16 rounding of s, see act_sum_bound).
    for (int n : {32, 64, 896, 2048}) {
        CAPTURE(k.name);
        CAPTURE(n);
        auto w = randv(size_t(n), uint64_t(n) + 31, 2.0f), x = randv(size_t(n), uint64_t(n) + 32, 0.5f);
        std::vector<W> qw(size_t(n / 32));
        std::vector<A> qx(size_t(n / 32));
        k.quantize_w(w.data(), qw.data(), n);
        k.quantize_a(x.data(), qx.data(), n);
        double dot, mag, extra;
        dequantized_dot(k, qw.data(), qx.data(), n, &dot, &mag, &extra);
        const float r = k.ref(n, qw.data(), qx.data()), s = k.simd(n, qw.data(), qx.data());
        CHECK(std::fabs(r - dot) <= 1e-6 * mag + extra);
        CHECK(std::fabs(s - dot) <= 1e-6 * mag + extra);
        // And the quantization error against the unquantized float dot stays small.
        double exact = 0;
        for (int i = 0; i < n; ++i) exact += double(w[size_t(i)]) * x[size_t(i)];
        CHECK(std::fabs(s - exact) <= 0.05 * mag);
    }
}

template <class W, class A>
void check_matmuls(const Kernel<W, A>& k) {
    // Every ISA path, odd shapes, 1..3 threads: the SIMD results are bit-identical to the
    // one-token SIMD dot and to each other (same exact integer lanes, same float
    // operations in the same order, see kernels/qgemm_legacy.hpp); the scalar path is
    // the reference dot exactly; all within the dequantized-dot tolerance above.
    std::vector<KernelIsa> isas{KernelIsa::Scalar};
    if (cpu_has_avx2()) isas.push_back(KernelIsa::Avx2);
    if (cpu_has_avx512vnni()) isas.push_back(KernelIsa::Avx512Vnni);
    MESSAGE(std::string(k.name) << ": matmul paths tested: " << isas.size());
    ThreadPool pool2(2), pool3(3);
    for (int cols : {32, 96, 896}) {
        for (int rows : {1, 3, 5, 17, 46}) {
            for (int ntok = 1; ntok <= 9; ++ntok) {
                CAPTURE(k.name);
                CAPTURE(cols);
                CAPTURE(rows);
                CAPTURE(ntok);
                const int nb = cols / 32;
                auto Wf = randv(size_t(rows * cols), uint64_t(100 + rows + cols), 2.0f);
                auto Xf = randv(size_t(ntok * cols), uint64_t(200 + ntok + cols), 0.5f);
                Wf[0] = 4.0f;  // block extremes: q at 0 and at its maximum
                if (Wf.size() > 40) Wf[40] = -4.0f;
                Xf[1] = -0.5f;  // an activation at -127
                std::vector<W> qw(size_t(rows * nb));
                std::vector<A> qx(size_t(ntok * nb));
                k.quantize_w(Wf.data(), qw.data(), rows * cols);
                k.quantize_a(Xf.data(), qx.data(), ntok * cols);
                std::vector<double> dot(size_t(rows * ntok)), mag(dot.size()), extra(dot.size());
                for (int t = 0; t < ntok; ++t)
                    for (int r = 0; r < rows; ++r) {
                        const size_t o = size_t(t * rows + r);
                        dequantized_dot(k, &qw[size_t(r * nb)], &qx[size_t(t * nb)], cols, &dot[o], &mag[o], &extra[o]);
                    }
                std::vector<float> first;
                for (KernelIsa isa : isas) {
                    kernels_set_max_isa(isa);
                    REQUIRE(kernels_isa() == isa);
                    for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
                        std::vector<float> y(size_t(rows * ntok), -1.0f);
                        k.matmul(qw.data(), rows, cols, qx.data(), ntok, y.data(), pool);
                        for (int t = 0; t < ntok; ++t)
                            for (int r = 0; r < rows; ++r) {
                                const size_t o = size_t(t * rows + r);
                                const W* wr = &qw[size_t(r * nb)];
                                const A* xt = &qx[size_t(t * nb)];
                                CHECK(std::fabs(y[o] - dot[o]) <= 1e-6 * mag[o] + extra[o]);
                                if (isa == KernelIsa::Scalar)
                                    CHECK(bits(y[o]) == bits(k.ref(cols, wr, xt)));
                                else
                                    CHECK(bits(y[o]) == bits(k.simd(cols, wr, xt)));
                            }
                        if (isa == KernelIsa::Scalar) continue;
                        if (first.empty())
                            first = y;
                        else
                            CHECK(std::memcmp(first.data(), y.data(), y.size() * sizeof(float)) == 0);
                    }
                }
                kernels_set_max_isa(KernelIsa::Avx512Vnni);
            }
        }
    }
}

const Kernel<BlockQ5_0, BlockQ8_0> kQ5_0Kernel{"q5_0", quantize_row_q5_0_ref, dequantize_row_q5_0, quantize_row_q8_0_ref,
                                               vec_dot_q5_0_q8_0_ref, vec_dot_q5_0_q8_0, matmul_q5_0};
const Kernel<BlockQ4_1, BlockQ8_1> kQ4_1Kernel{"q4_1", quantize_row_q4_1_ref, dequantize_row_q4_1, quantize_row_q8_1_ref,
                                               vec_dot_q4_1_q8_1_ref, vec_dot_q4_1_q8_1, matmul_q4_1};
const Kernel<BlockQ5_1, BlockQ8_1> kQ5_1Kernel{"q5_1", quantize_row_q5_1_ref, dequantize_row_q5_1, quantize_row_q8_1_ref,
                                               vec_dot_q5_1_q8_1_ref, vec_dot_q5_1_q8_1, matmul_q5_1};
}  // namespace

TEST_CASE("legacy quants: one-token dots, reference and SIMD, vs the dequantized dot") {
    check_dots(kQ5_0Kernel);
    check_dots(kQ4_1Kernel);
    check_dots(kQ5_1Kernel);
}

TEST_CASE("legacy quants: q5_0 matmul - every ISA path, odd shapes, n_tok 1..9, 1..3 threads") { check_matmuls(kQ5_0Kernel); }
TEST_CASE("legacy quants: q4_1 matmul - every ISA path, odd shapes, n_tok 1..9, 1..3 threads") { check_matmuls(kQ4_1Kernel); }
TEST_CASE("legacy quants: q5_1 matmul - every ISA path, odd shapes, n_tok 1..9, 1..3 threads") { check_matmuls(kQ5_1Kernel); }

TEST_CASE("legacy quants: the SIMD Q8_1 quantizer is quantize_row_q8_1_ref, bit for bit, on every ISA path") {
    // Rows with exact ties (x / d = k + 0.5: roundf rounds them away from zero, not to
    // even), zero blocks, fp16-subnormal scales, huge values and random ones.
    const int n = 32 * 40;
    std::vector<float> x(static_cast<size_t>(n));
    Lcg r{77};
    for (int b = 0; b < n / 32; ++b) {
        const float scale = std::ldexp(1.0f, b % 40 - 30);
        for (int j = 0; j < 32; ++j) {
            float v = r.next();
            if (b % 4 == 1) v = (j == 0 ? 127.0f : float(int(v * 100)) + 0.5f) / 127.0f;  // d = 1/127: ties
            if (b % 4 == 1 && j == 0) v = 1.0f;
            if (b % 7 == 3) v = 0.0f;
            x[size_t(b * 32 + j)] = v * scale * (b % 5 == 2 ? 1e30f : 1.0f);
        }
    }
    std::vector<float> ties(32);
    // -127 makes d = 1 exactly; then +-(j + 0.5), where ties-to-even would differ at even j.
    for (int j = 0; j < 32; ++j) ties[size_t(j)] = j == 0 ? -127.0f : float((j / 2) % 2 ? -1 : 1) * (float(j) + 0.5f);
    x.insert(x.end(), ties.begin(), ties.end());
    const int total = int(x.size());
    std::vector<BlockQ8_1> ref(size_t(total / 32)), simd(ref.size());
    quantize_row_q8_1_ref(x.data(), ref.data(), total);
    CHECK(ref.back().qs[2] == -3);  // -2.5: away from zero
    CHECK(ref.back().qs[4] == 5);   // 4.5
    std::vector<KernelIsa> isas{KernelIsa::Scalar};
    if (cpu_has_avx2()) isas.push_back(KernelIsa::Avx2);
    if (cpu_has_avx512vnni()) isas.push_back(KernelIsa::Avx512Vnni);
    for (KernelIsa isa : isas) {
        kernels_set_max_isa(isa);
        std::fill(simd.begin(), simd.end(), BlockQ8_1{});
        quantize_row_q8_1(x.data(), simd.data(), total);
        CHECK(std::memcmp(simd.data(), ref.data(), ref.size() * sizeof(BlockQ8_1)) == 0);
        for (size_t b = 0; b < ref.size(); ++b) {
            CAPTURE(b);
            REQUIRE(std::memcmp(&simd[b], &ref[b], sizeof(BlockQ8_1)) == 0);
        }
    }
    kernels_set_max_isa(KernelIsa::Avx512Vnni);
}

TEST_CASE("legacy quants: matmul_quantized dispatch and quantize_activations (Q8_1)") {
    const int rows = 7, cols = 896, ntok = 5, nb = cols / 32;
    auto Wf = randv(size_t(rows * cols), 41, 1.5f), Xf = randv(size_t(ntok * cols), 42);
    std::vector<BlockQ5_1> qw(size_t(rows * nb));
    quantize_row_q5_1_ref(Wf.data(), qw.data(), rows * cols);
    REQUIRE(act_type_for(GgmlType::Q5_1) == ActType::Q8_1);
    REQUIRE(act_row_bytes(ActType::Q8_1, cols) == size_t(nb) * sizeof(BlockQ8_1));
    ThreadPool pool(2);
    std::vector<BlockQ8_1> xq(size_t(ntok * nb)), xr(xq.size());
    quantize_activations(ActType::Q8_1, Xf.data(), ntok, cols, xq.data(), &pool);
    quantize_row_q8_1_ref(Xf.data(), xr.data(), ntok * cols);
    CHECK(std::memcmp(xq.data(), xr.data(), xq.size() * sizeof(BlockQ8_1)) == 0);
    std::vector<float> y(size_t(rows * ntok)), z(y.size());
    matmul_quantized(GgmlType::Q5_1, qw.data(), rows, cols, xq.data(), ntok, y.data(), &pool);
    matmul_q5_1(qw.data(), rows, cols, xq.data(), ntok, z.data(), nullptr);
    CHECK(std::memcmp(y.data(), z.data(), y.size() * sizeof(float)) == 0);
}

TEST_CASE("legacy quants: a generated model in each type - prefill, decode, threads and ISA paths agree") {
    // The weights stay Q5_0 / Q4_1 / Q5_1 at load (matmul_quantized). A prompt as one
    // batch (4-token tiles) and token by token (one-row decode tiles) give the same
    // logits up to the attention's batch order (1e-5, as model_test's Q8_0 / Q4_0 check);
    // 2 threads and the AVX2 / AVX512-VNNI caps give bit-identical logits (the F32 kernels
    // are AVX2 under both caps, the quantized ones bit-identical, see above); and the
    // logits stay near the F32 model's of the same seed (bounds ~2x the measured, below).
    const std::string vocab_bytes = engine_test::read_file(engine_test::vocab_path("ggml-vocab-llama-spm.gguf"));
    auto vocab = GgufFile::from_memory(vocab_bytes.data(), vocab_bytes.size());
    REQUIRE_MESSAGE(vocab.ok(), vocab.error());
    auto make = [&](GgmlType type, std::vector<uint8_t>* bytes) {
        TinyLlamaShape s;
        s.type = type;
        GgufWriter w;
        Status st = make_tiny_llama(s, **vocab, &w);
        REQUIRE_MESSAGE(st.ok(), st.message());
        *bytes = w.to_bytes();
        auto f = GgufFile::from_memory(bytes->data(), bytes->size());
        REQUIRE_MESSAGE(f.ok(), f.error());
        return std::move(f).value();
    };
    auto load = [](const GgufFile& f, int threads) {
        ModelOptions o;
        o.n_threads = threads;
        auto m = Model::from_gguf(f, o);
        REQUIRE_MESSAGE(m.ok(), m.error());
        return std::move(m).value();
    };
    const std::vector<int32_t> prompt = {1, 306, 763, 278, 7933, 310, 5765, 29889, 13, 1576, 11};
    const int n = int(prompt.size());
    std::vector<uint8_t> f32_bytes;
    auto f32_file = make(GgmlType::F32, &f32_bytes);
    auto f32 = load(*f32_file, 1);
    const int V = f32->n_vocab();
    std::vector<float> ref(size_t(n) * size_t(V));
    REQUIRE(f32->forward(*f32->new_kv_cache(64), prompt.data(), n, 0, ref.data(), true).ok());
    struct Case { GgmlType type; double max_rel; };
    // Measured max rel err over the prompt's logits (seed 1): Q5_0 0.105, Q4_1 0.226, Q5_1
    // 0.101 (model_test's Q4_0: 0.21); weights and Q8_0 / Q8_1 activations both count.
    for (Case c : {Case{GgmlType::Q5_0, 0.2}, Case{GgmlType::Q4_1, 0.4}, Case{GgmlType::Q5_1, 0.2}}) {
        CAPTURE(ggml_type_name(uint32_t(c.type)));
        std::vector<uint8_t> bytes;
        auto file = make(c.type, &bytes);
        REQUIRE(file->find_tensor("blk.0.attn_q.weight") != nullptr);
        CHECK(file->find_tensor("blk.0.attn_q.weight")->type == uint32_t(c.type));
        auto m1 = load(*file, 1), m2 = load(*file, 2);
        std::vector<float> batch(ref.size()), seq(ref.size()), batch2(ref.size());
        REQUIRE(m1->forward(*m1->new_kv_cache(64), prompt.data(), n, 0, batch.data(), true).ok());
        auto kv = m1->new_kv_cache(64);
        for (int t = 0; t < n; ++t) REQUIRE(m1->forward(*kv, &prompt[size_t(t)], 1, t, &seq[size_t(t) * size_t(V)]).ok());
        CHECK(engine_test::rel_max_err(batch.data(), seq.data(), batch.size()) <= 1e-5);
        REQUIRE(m2->forward(*m2->new_kv_cache(64), prompt.data(), n, 0, batch2.data(), true).ok());
        CHECK(batch2 == batch);
        if (cpu_has_avx512vnni()) {
            kernels_set_max_isa(KernelIsa::Avx2);
            std::vector<float> avx2(ref.size());
            REQUIRE(m1->forward(*m1->new_kv_cache(64), prompt.data(), n, 0, avx2.data(), true).ok());
            kernels_set_max_isa(KernelIsa::Avx512Vnni);
            CHECK(avx2 == batch);
        }
        const double rel = engine_test::rel_max_err(batch.data(), ref.data(), ref.size());
        MESSAGE(ggml_type_name(uint32_t(c.type)) << " vs F32: max rel err " << rel);
        CHECK(rel < c.max_rel);
    }
}
