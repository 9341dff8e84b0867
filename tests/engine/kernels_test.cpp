// Each CPU kernel against a scalar reference computed in double, with explicit
// tolerances, and the AVX2 paths against the scalar reference paths.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/ggml_types.hpp"
#include "engine/kernels/attention.hpp"
#include "engine/kernels/cpu.hpp"
#include "engine/kernels/matmul_f32.hpp"
#include "engine/kernels/matmul_q4_0.hpp"
#include "engine/kernels/matmul_q8_0.hpp"
#include "engine/kernels/qgemm_x16.hpp"
#include "engine/kernels/rmsnorm.hpp"
#include "engine/kernels/rope.hpp"
#include "engine/kernels/softmax.hpp"
#include "engine/kernels/swiglu.hpp"
#include "engine/thread_pool.hpp"
#include "random_vectors.hpp"

using namespace reprise::engine;

namespace {
using test::Lcg;
using test::randv;
}  // namespace

TEST_CASE("kernels: rmsnorm vs double reference (rel 1e-6)") {
    for (int n : {1, 7, 64, 768}) {
        auto x = randv(size_t(n), 1, 3.0f), w = randv(size_t(n), 2);
        std::vector<float> y(static_cast<size_t>(n));
        rmsnorm_f32(y.data(), x.data(), w.data(), n, 1e-5f);
        double ss = 0;
        for (float v : x) ss += double(v) * v;
        const double s = 1.0 / std::sqrt(ss / n + 1e-5);
        for (int i = 0; i < n; ++i) CHECK(std::fabs(y[size_t(i)] - x[size_t(i)] * s * w[size_t(i)]) <= 1e-6 * (1 + std::fabs(x[size_t(i)] * s * w[size_t(i)])));
    }
    // In place works (the forward pass normalises its scratch buffers in place).
    auto x = randv(16, 3);
    auto w = randv(16, 4);
    std::vector<float> y(16);
    rmsnorm_f32(y.data(), x.data(), w.data(), 16, 1e-5f);
    rmsnorm_f32(x.data(), x.data(), w.data(), 16, 1e-5f);
    CHECK(x == y);
}

TEST_CASE("kernels: rope rotates adjacent pairs (abs 1e-5)") {
    const int heads = 3, hd = 16;
    for (int n_rot : {16, 8}) {
        for (int pos : {0, 1, 17, 511}) {
            auto x = randv(size_t(heads * hd), 5);
            auto y = x;
            rope_f32(y.data(), heads, hd, n_rot, pos, 10000.0f);
            for (int h = 0; h < heads; ++h)
                for (int j = 0; j < hd; j += 2) {
                    const float* a = &x[size_t(h * hd + j)];
                    const float* b = &y[size_t(h * hd + j)];
                    if (j >= n_rot) {  // beyond n_rot: untouched
                        CHECK(b[0] == a[0]);
                        CHECK(b[1] == a[1]);
                        continue;
                    }
                    const double th = double(float(pos) * (1.0f / std::pow(10000.0f, float(j) / float(n_rot))));
                    CHECK(std::fabs(b[0] - (a[0] * std::cos(th) - a[1] * std::sin(th))) < 1e-5);
                    CHECK(std::fabs(b[1] - (a[0] * std::sin(th) + a[1] * std::cos(th))) < 1e-5);
                }
            if (pos == 0) CHECK(y == x);
        }
    }
    // Relative positions: <rope(q, m), rope(k, n)> depends only on m - n.
    auto q = randv(16, 6), k = randv(16, 7);
    auto dotr = [&](int m, int n) {
        auto a = q, b = k;
        rope_f32(a.data(), 1, 16, 16, m, 10000.0f);
        rope_f32(b.data(), 1, 16, 16, n, 10000.0f);
        double s = 0;
        for (int i = 0; i < 16; ++i) s += double(a[size_t(i)]) * b[size_t(i)];
        return s;
    };
    CHECK(std::fabs(dotr(5, 2) - dotr(103, 100)) < 1e-4);
}

TEST_CASE("kernels: softmax vs double reference (abs 1e-6) - no overflow") {
    auto x = randv(100, 8, 20.0f);
    x[3] = 1000.0f;  // would overflow exp without the max subtraction
    auto y = x;
    softmax_f32(y.data(), 100);
    double mx = 1000.0, sum = 0;
    for (float v : x) sum += std::exp(double(v) - mx);
    double total = 0;
    for (int i = 0; i < 100; ++i) {
        CHECK(std::fabs(y[size_t(i)] - std::exp(double(x[size_t(i)]) - mx) / sum) < 1e-6);
        total += y[size_t(i)];
    }
    CHECK(std::fabs(total - 1.0) < 1e-5);
}

TEST_CASE("kernels: swiglu vs double reference (rel 1e-6)") {
    auto g = randv(300, 9, 8.0f), u = randv(300, 10, 2.0f);
    std::vector<float> y(300);
    swiglu_f32(y.data(), g.data(), u.data(), 300);
    for (size_t i = 0; i < 300; ++i) {
        const double r = double(g[i]) / (1.0 + std::exp(-double(g[i]))) * u[i];
        CHECK(std::fabs(y[i] - r) <= 1e-6 * (1 + std::fabs(r)));
    }
}

TEST_CASE("kernels: f32 dot/matmul - AVX2 and scalar vs double (1e-6 of sum |a*b|)") {
    for (int n : {1, 7, 8, 31, 32, 33, 100, 768}) {
        auto a = randv(size_t(n), 11), b = randv(size_t(n), 12);
        double ref = 0, mag = 0;
        for (int i = 0; i < n; ++i) {
            ref += double(a[size_t(i)]) * b[size_t(i)];
            mag += std::fabs(double(a[size_t(i)]) * b[size_t(i)]);
        }
        // float accumulation: error <= n * eps * sum|a*b| in the worst case; 1e-6 is
        // ~8 ulps-of-the-sum for these n with pairwise-ish (multi-lane) summation.
        CHECK(std::fabs(dot_f32(a.data(), b.data(), n) - ref) <= 1e-6 * mag + 1e-30);
        CHECK(std::fabs(dot_f32_ref(a.data(), b.data(), n) - ref) <= 1e-6 * mag * std::max(1.0, n / 64.0) + 1e-30);
    }
    const int rows = 37, cols = 96, ntok = 5;
    auto W = randv(size_t(rows * cols), 13), X = randv(size_t(ntok * cols), 14);
    std::vector<float> Y1(size_t(rows * ntok)), Y2(Y1.size());
    matmul_f32(W.data(), rows, cols, X.data(), ntok, Y1.data(), nullptr);
    ThreadPool pool(3);
    matmul_f32(W.data(), rows, cols, X.data(), ntok, Y2.data(), &pool);
    CHECK(Y1 == Y2);  // threads split rows; every dot is computed identically
    for (int t = 0; t < ntok; ++t)
        for (int r = 0; r < rows; ++r)
            CHECK(Y1[size_t(t * rows + r)] == dot_f32(&W[size_t(r * cols)], &X[size_t(t * cols)], cols));
}

TEST_CASE("kernels: q8_0 x q8_0 dot: AVX2 == scalar bit for bit - == dequantized float dot (1e-6 rel)") {
    for (int n : {32, 64, 768, 2048}) {
        auto a = randv(size_t(n), 15, 2.0f), b = randv(size_t(n), 16, 0.5f);
        std::vector<BlockQ8_0> qa(size_t(n / 32)), qb(size_t(n / 32));
        quantize_row_q8_0_ref(a.data(), qa.data(), n);
        quantize_row_q8_0_ref(b.data(), qb.data(), n);
        std::vector<float> da(static_cast<size_t>(n)), db(static_cast<size_t>(n));
        dequantize_row_q8_0(qa.data(), da.data(), n);
        dequantize_row_q8_0(qb.data(), db.data(), n);
        double ref = 0, mag = 0;
        for (int i = 0; i < n; ++i) {
            ref += double(da[size_t(i)]) * db[size_t(i)];
            mag += std::fabs(double(da[size_t(i)]) * db[size_t(i)]);
        }
        const float s = vec_dot_q8_0_q8_0_ref(n, qa.data(), qb.data());
        const float v = vec_dot_q8_0_q8_0(n, qa.data(), qb.data());
        // Integer block sums are exact; only the per-block float scaling/summation rounds.
        CHECK(std::fabs(s - ref) <= 1e-6 * mag);
        CHECK(v == s);  // the reference's float order on every path
        // Quantization error vs the unquantized float dot: Q8_0 steps are max|x|/127
        // per block, so the error stays well under 2% of sum |a*b|.
        double exact = 0;
        for (int i = 0; i < n; ++i) exact += double(a[size_t(i)]) * b[size_t(i)];
        CHECK(std::fabs(v - exact) <= 0.02 * mag);
    }
}

TEST_CASE("kernels: q4_0 x q8_0 dot: AVX2 == scalar bit for bit - == dequantized float dot (1e-6 rel)") {
    for (int n : {32, 64, 768, 2048}) {
        auto a = randv(size_t(n), 17, 2.0f), b = randv(size_t(n), 18, 0.5f);
        std::vector<BlockQ4_0> qa(size_t(n / 32));
        std::vector<BlockQ8_0> qb(size_t(n / 32));
        quantize_row_q4_0_ref(a.data(), qa.data(), n);
        quantize_row_q8_0_ref(b.data(), qb.data(), n);
        std::vector<float> da(static_cast<size_t>(n)), db(static_cast<size_t>(n));
        dequantize_row_q4_0(qa.data(), da.data(), n);
        dequantize_row_q8_0(qb.data(), db.data(), n);
        double ref = 0, mag = 0;
        for (int i = 0; i < n; ++i) {
            ref += double(da[size_t(i)]) * db[size_t(i)];
            mag += std::fabs(double(da[size_t(i)]) * db[size_t(i)]);
        }
        CHECK(std::fabs(vec_dot_q4_0_q8_0_ref(n, qa.data(), qb.data()) - ref) <= 1e-6 * mag);
        CHECK(vec_dot_q4_0_q8_0(n, qa.data(), qb.data()) == vec_dot_q4_0_q8_0_ref(n, qa.data(), qb.data()));
    }
}

TEST_CASE("kernels: quantized matmuls split over threads give identical results") {
    const int rows = 45, cols = 128, ntok = 6;  // 4-token tiles + a remainder
    auto W = randv(size_t(rows * cols), 19), X = randv(size_t(ntok * cols), 20);
    std::vector<BlockQ8_0> w8(size_t(rows * cols / 32)), x8(size_t(ntok * cols / 32));
    std::vector<BlockQ4_0> w4(size_t(rows * cols / 32));
    quantize_row_q8_0_ref(W.data(), w8.data(), rows * cols);
    quantize_row_q4_0_ref(W.data(), w4.data(), rows * cols);
    quantize_activations_q8_0(X.data(), ntok, cols, x8.data());
    ThreadPool pool(2);
    std::vector<float> a(size_t(rows * ntok)), b(a.size()), c(a.size()), d(a.size());
    matmul_q8_0(w8.data(), rows, cols, x8.data(), ntok, a.data(), nullptr);
    matmul_q8_0(w8.data(), rows, cols, x8.data(), ntok, b.data(), &pool);
    matmul_q4_0(w4.data(), rows, cols, x8.data(), ntok, c.data(), nullptr);
    matmul_q4_0(w4.data(), rows, cols, x8.data(), ntok, d.data(), &pool);
    CHECK(a == b);
    CHECK(c == d);
    for (int t = 0; t < ntok; ++t)
        for (int r = 0; r < rows; ++r) {
            CHECK(a[size_t(t * rows + r)] == vec_dot_q8_0_q8_0(cols, &w8[size_t(r * cols / 32)], &x8[size_t(t * cols / 32)]));
            CHECK(c[size_t(t * rows + r)] == vec_dot_q4_0_q8_0(cols, &w4[size_t(r * cols / 32)], &x8[size_t(t * cols / 32)]));
        }
}

TEST_CASE("kernels: tiled quantized matmuls - every ISA path, odd shapes, 1..3 threads") {
    // The SIMD kernels (kernels/qgemm_x16.cpp, weights repacked 16 rows at a time)
    // compute each (row, token) dot with exact integer block sums and the scalar
    // reference's float operations in its order, whatever the ISA (AVX2 maddubs,
    // AVX512-VNNI vpdpbusd with an offset correction), tile shape, row group or thread
    // split: so every path is bit-identical to vec_dot_*_ref (and to vec_dot_*), and
    // within 1e-6 of sum |w*x| of the double product of the dequantized values.
    std::vector<KernelIsa> isas{KernelIsa::Scalar};
    if (cpu_has_avx2()) isas.push_back(KernelIsa::Avx2);
    if (cpu_has_avx512vnni()) isas.push_back(KernelIsa::Avx512Vnni);
    MESSAGE("quantized matmul paths tested: " << isas.size());
    ThreadPool pool2(2), pool3(3);
    for (int cols : {32, 96, 256}) {
        for (int rows : {1, 3, 5, 17, 46}) {
            for (int ntok : {1, 2, 3, 4, 5, 7, 9, 17}) {  // 8-token tiles and every remainder
                CAPTURE(cols);
                CAPTURE(rows);
                CAPTURE(ntok);
                const int nb = cols / 32;
                auto W = randv(size_t(rows * cols), uint64_t(100 + rows), 2.0f);
                auto X = randv(size_t(ntok * cols), uint64_t(200 + ntok), 0.5f);
                W[0] = 4.0f;  // a block maximum (quantizes to +-127) and a negative one
                if (W.size() > 40) W[40] = -4.0f;
                std::vector<BlockQ8_0> w8(size_t(rows * nb)), x8(size_t(ntok * nb));
                std::vector<BlockQ4_0> w4(size_t(rows * nb));
                quantize_row_q8_0_ref(W.data(), w8.data(), rows * cols);
                quantize_row_q4_0_ref(W.data(), w4.data(), rows * cols);
                quantize_activations_q8_0(X.data(), ntok, cols, x8.data());
                std::vector<float> dw8(W.size()), dw4(W.size()), dx(X.size());
                dequantize_row_q8_0(w8.data(), dw8.data(), rows * cols);
                dequantize_row_q4_0(w4.data(), dw4.data(), rows * cols);
                dequantize_row_q8_0(x8.data(), dx.data(), ntok * cols);
                std::vector<float> first8, first4;  // the first path's results
                for (KernelIsa isa : isas) {
                    kernels_set_max_isa(isa);
                    REQUIRE(kernels_isa() == isa);
                    for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
                        std::vector<float> y8(size_t(rows * ntok)), y4(y8.size());
                        matmul_q8_0(w8.data(), rows, cols, x8.data(), ntok, y8.data(), pool);
                        matmul_q4_0(w4.data(), rows, cols, x8.data(), ntok, y4.data(), pool);
                        for (int t = 0; t < ntok; ++t)
                            for (int r = 0; r < rows; ++r) {
                                const size_t o = size_t(t * rows + r);
                                double r8 = 0, m8 = 0, r4 = 0, m4 = 0;
                                for (int c = 0; c < cols; ++c) {
                                    const double xv = dx[size_t(t * cols + c)];
                                    r8 += dw8[size_t(r * cols + c)] * xv;
                                    m8 += std::fabs(dw8[size_t(r * cols + c)] * xv);
                                    r4 += dw4[size_t(r * cols + c)] * xv;
                                    m4 += std::fabs(dw4[size_t(r * cols + c)] * xv);
                                }
                                CHECK(std::fabs(y8[o] - r8) <= 1e-6 * m8 + 1e-30);
                                CHECK(std::fabs(y4[o] - r4) <= 1e-6 * m4 + 1e-30);
                                CHECK(y8[o] == vec_dot_q8_0_q8_0_ref(cols, &w8[size_t(r * nb)], &x8[size_t(t * nb)]));
                                CHECK(y4[o] == vec_dot_q4_0_q8_0_ref(cols, &w4[size_t(r * nb)], &x8[size_t(t * nb)]));
                                CHECK(y8[o] == vec_dot_q8_0_q8_0(cols, &w8[size_t(r * nb)], &x8[size_t(t * nb)]));
                                CHECK(y4[o] == vec_dot_q4_0_q8_0(cols, &w4[size_t(r * nb)], &x8[size_t(t * nb)]));
                            }
                        if (first8.empty()) {
                            first8 = y8;
                            first4 = y4;
                        } else {  // scalar == AVX2 == AVX512-VNNI, any thread count
                            CHECK(y8 == first8);
                            CHECK(y4 == first4);
                        }
                    }
                }
                kernels_set_max_isa(KernelIsa::Avx512Vnni);
            }
        }
    }
}

TEST_CASE("kernels: activation quantizer == quantize_row_q8_0_ref bit for bit - ties round away from zero") {
    // Block 0: amax 127 makes d = 1 and x * id = x exactly, so the halves are ties
    // (roundf: 2.5 -> 3, -2.5 -> -3, 0.5 -> 1); block 1 all zeros; the rest random at
    // several scales.
    const int cols = 32 * 10, ntok = 3;
    std::vector<float> X = randv(size_t(ntok * cols), 31, 3.0f);
    for (int j = 0; j < 32; ++j) X[size_t(j)] = j == 0 ? 127.0f : (j % 2 ? -1.0f : 1.0f) * (float(j) * 2.0f + 0.5f);
    for (int j = 32; j < 64; ++j) X[size_t(j)] = 0.0f;
    for (int j = 64; j < 96; ++j) X[size_t(j)] *= 1e-6f;
    for (int j = 96; j < 128; ++j) X[size_t(j)] *= 1e5f;
    std::vector<BlockQ8_0> want(size_t(ntok * cols / 32)), got(want.size());
    for (int t = 0; t < ntok; ++t) quantize_row_q8_0_ref(&X[size_t(t * cols)], &want[size_t(t * cols / 32)], cols);
    REQUIRE(want[0].qs[1] == -3);  // -2.5 -> -3
    REQUIRE(want[0].qs[2] == 5);   // 4.5 -> 5
    std::vector<KernelIsa> isas{KernelIsa::Scalar};
    if (cpu_has_avx2()) isas.push_back(KernelIsa::Avx2);
    for (KernelIsa isa : isas) {
        kernels_set_max_isa(isa);
        quantize_activations_q8_0(X.data(), ntok, cols, got.data());
        for (size_t b = 0; b < want.size(); ++b) {
            CAPTURE(b);
            CHECK(got[b].d == want[b].d);
            for (int j = 0; j < 32; ++j) CHECK(got[b].qs[j] == want[b].qs[j]);
        }
    }
    kernels_set_max_isa(KernelIsa::Avx512Vnni);
}

TEST_CASE("kernels: x16 repacking keeps every row - unpack(pack(W)) == W, padding rows are zero") {
    const int cols = 96, nb = cols / 32;
    for (int rows : {1, 16, 21}) {
        CAPTURE(rows);
        auto W = randv(size_t(rows * cols), uint64_t(40 + rows), 2.0f);
        std::vector<BlockQ8_0> w8(size_t(rows * nb)), r8(static_cast<size_t>(nb));
        std::vector<BlockQ4_0> w4(size_t(rows * nb)), r4(static_cast<size_t>(nb));
        quantize_row_q8_0_ref(W.data(), w8.data(), rows * cols);
        quantize_row_q4_0_ref(W.data(), w4.data(), rows * cols);
        std::vector<uint8_t> p8(x16_bytes(GgmlType::Q8_0, rows, cols)), p4(x16_bytes(GgmlType::Q4_0, rows, cols));
        CHECK(p8.size() == size_t((rows + 15) / 16) * 16 * nb * sizeof(BlockQ8_0));  // same bytes per row
        CHECK(p4.size() == size_t((rows + 15) / 16) * 16 * nb * sizeof(BlockQ4_0));
        x16_pack(GgmlType::Q8_0, w8.data(), rows, cols, p8.data());
        x16_pack(GgmlType::Q4_0, w4.data(), rows, cols, p4.data());
        for (int r = 0; r < (rows + 15) / 16 * 16; ++r) {
            x16_unpack_row(GgmlType::Q8_0, p8.data(), cols, r, r8.data());
            x16_unpack_row(GgmlType::Q4_0, p4.data(), cols, r, r4.data());
            for (int b = 0; b < nb; ++b) {
                const BlockQ8_0 z8{};
                const BlockQ4_0 z4{};
                const BlockQ8_0& e8 = r < rows ? w8[size_t(r * nb + b)] : z8;
                const BlockQ4_0& e4 = r < rows ? w4[size_t(r * nb + b)] : z4;
                CHECK(std::memcmp(&r8[size_t(b)], &e8, sizeof(BlockQ8_0)) == 0);
                CHECK(std::memcmp(&r4[size_t(b)], &e4, sizeof(BlockQ4_0)) == 0);
            }
        }
    }
}

TEST_CASE("kernels: x16_matmul_many (one hand-off for wq/wk/wv) == one x16_matmul per matrix, any thread split") {
    const int cols = 64, nb = cols / 32, ntok = 3;
    const int rows[3] = {48, 21, 5};  // row groups split unevenly across the products
    auto X = randv(size_t(ntok * cols), 77, 1.0f);
    std::vector<BlockQ8_0> xq(size_t(ntok * nb));
    quantize_activations_q8_0(X.data(), ntok, cols, xq.data());
    ThreadPool pool2(2), pool3(3);
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0}) {
        std::vector<std::vector<uint8_t>> packed(3);
        std::vector<std::vector<float>> want(3), got(3);
        std::vector<X16Product> ps;
        for (int i = 0; i < 3; ++i) {
            auto W = randv(size_t(rows[i] * cols), uint64_t(60 + i), 1.5f);
            std::vector<BlockQ8_0> w8(size_t(rows[i] * nb));
            std::vector<BlockQ4_0> w4(size_t(rows[i] * nb));
            quantize_row_q8_0_ref(W.data(), w8.data(), rows[i] * cols);
            quantize_row_q4_0_ref(W.data(), w4.data(), rows[i] * cols);
            packed[size_t(i)].resize(x16_bytes(t, rows[i], cols));
            x16_pack(t, t == GgmlType::Q8_0 ? static_cast<const void*>(w8.data()) : w4.data(), rows[i], cols, packed[size_t(i)].data());
            want[size_t(i)].resize(size_t(rows[i] * ntok));
            got[size_t(i)].resize(want[size_t(i)].size());
            x16_matmul(t, packed[size_t(i)].data(), rows[i], cols, xq.data(), ntok, want[size_t(i)].data(), nullptr);
            ps.push_back(X16Product{packed[size_t(i)].data(), rows[i], got[size_t(i)].data()});
        }
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
            for (auto& g : got) std::fill(g.begin(), g.end(), -1.0f);
            x16_matmul_many(t, ps.data(), 3, cols, xq.data(), ntok, pool);
            for (int i = 0; i < 3; ++i) CHECK(got[size_t(i)] == want[size_t(i)]);
        }
    }
}

TEST_CASE("kernels: GQA attention vs double reference (abs 1e-5) - head_dim 64's AVX2 path == the reference's arithmetic") {
  for (int hd : {16, 64}) {
    CAPTURE(hd);
    const int n_head = 8, n_head_kv = 2, n_kv = 13, ekv = n_head_kv * hd;
    auto q = randv(size_t(n_head * hd), 21, 2.0f);
    auto K = randv(size_t(n_kv * ekv), 22, 2.0f), Vv = randv(size_t(n_kv * ekv), 23);
    std::vector<float> out(size_t(n_head * hd)), scratch(static_cast<size_t>(n_kv));
    // Paged: blocks of 4 positions (K rows then V rows), laid out in reverse order
    // through the block table, as kv_cache.hpp does.
    const int bs = 4, n_blocks = (n_kv + bs - 1) / bs;
    const size_t block_stride = size_t(2 * bs * ekv);
    std::vector<float> pool(block_stride * size_t(n_blocks), -7.0f);
    std::vector<int32_t> table(static_cast<size_t>(n_blocks));
    for (int b = 0; b < n_blocks; ++b) table[size_t(b)] = n_blocks - 1 - b;
    for (int p = 0; p < n_kv; ++p)
        for (int i = 0; i < ekv; ++i) {
            float* blk = pool.data() + size_t(table[size_t(p / bs)]) * block_stride;
            blk[size_t((p % bs) * ekv + i)] = K[size_t(p * ekv + i)];
            blk[size_t(bs * ekv + (p % bs) * ekv + i)] = Vv[size_t(p * ekv + i)];
        }
    attention_f32(q.data(), KvView{pool.data(), table.data(), bs, block_stride, 0, size_t(bs * ekv), size_t(ekv)}, n_kv,
                  n_head, n_head_kv, hd, out.data(), scratch.data());
    // The same values in one contiguous "block" give bit-identical output.
    {
        std::vector<float> flat(size_t(2 * n_kv * ekv));
        std::copy(K.begin(), K.end(), flat.begin());
        std::copy(Vv.begin(), Vv.end(), flat.begin() + n_kv * ekv);
        const int32_t zero = 0;
        std::vector<float> out_flat(out.size());
        attention_f32(q.data(), KvView{flat.data(), &zero, n_kv, 0, 0, size_t(n_kv * ekv), size_t(ekv)}, n_kv, n_head,
                      n_head_kv, hd, out_flat.data(), scratch.data());
        CHECK(out_flat == out);
    }
    for (int h = 0; h < n_head; ++h) {
        const int kvh = h / (n_head / n_head_kv);
        std::vector<double> s(static_cast<size_t>(n_kv));
        double mx = -1e300, sum = 0;
        for (int p = 0; p < n_kv; ++p) {
            double d = 0;
            for (int i = 0; i < hd; ++i) d += double(q[size_t(h * hd + i)]) * K[size_t(p * ekv + kvh * hd + i)];
            s[size_t(p)] = d / std::sqrt(double(hd));
            mx = std::max(mx, s[size_t(p)]);
        }
        for (auto& v : s) sum += v = std::exp(v - mx);
        for (int i = 0; i < hd; ++i) {
            double o = 0;
            for (int p = 0; p < n_kv; ++p) o += s[size_t(p)] / sum * Vv[size_t(p * ekv + kvh * hd + i)];
            CHECK(std::fabs(out[size_t(h * hd + i)] - o) < 1e-5);
        }
    }
    // Bit for bit the reference formulation (scores by dot_f32, softmax_f32, o += a * v
    // as multiply then add), whichever path attention_f32 took for this head size.
    for (int h = 0; h < n_head; ++h) {
        const int kvh = h / (n_head / n_head_kv);
        std::vector<float> sc(static_cast<size_t>(n_kv)), o(static_cast<size_t>(hd), 0.0f);
        for (int p = 0; p < n_kv; ++p) sc[size_t(p)] = dot_f32(&q[size_t(h * hd)], &K[size_t(p * ekv + kvh * hd)], hd) * (1.0f / std::sqrt(float(hd)));
        softmax_f32(sc.data(), n_kv);
        for (int p = 0; p < n_kv; ++p)
            for (int i = 0; i < hd; ++i) {
                const float m = sc[size_t(p)] * Vv[size_t(p * ekv + kvh * hd + i)];
                o[size_t(i)] = o[size_t(i)] + m;
            }
        for (int i = 0; i < hd; ++i) CHECK(out[size_t(h * hd + i)] == o[size_t(i)]);
    }
  }
}

TEST_CASE("thread pool: parallel_for covers 0..n exactly once - grain respected") {
    ThreadPool pool(3);
    for (int64_t n : {1, 2, 5, 16, 17, 1000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> misaligned{0};
        pool.parallel_for(n, [&](int64_t b, int64_t e) {
            if (b % 4 != 0) ++misaligned;
            for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
        }, 4);
        for (auto& h : hits) CHECK(h.load() == 1);
        CHECK(misaligned.load() == 0);
    }
}

TEST_CASE("kernels: rope with linear scaling and per-frequency factors, as ggml_rope_ext (abs 1e-5)") {
    // theta_j = freq_scale * pos * base^(-j/n_rot) / ff[j/2]; checked in double.
    const int hd = 16, n_rot = 16, pos = 37;
    const float base = 500000.0f, scale = 0.25f;
    std::vector<float> ff(n_rot / 2);
    for (int i = 0; i < n_rot / 2; ++i) ff[size_t(i)] = 1.0f + float(i) * 0.75f;  // like llama3's 1..8
    std::vector<float> x(hd), y(hd);
    for (int i = 0; i < hd; ++i) x[size_t(i)] = std::sin(float(i) * 0.7f) + 0.1f;
    y = x;
    rope_f32(y.data(), 1, hd, n_rot, pos, base, scale, ff.data());
    for (int j = 0; j < n_rot; j += 2) {
        const double theta = double(scale) * pos * std::pow(double(base), -double(j) / n_rot) / ff[size_t(j / 2)];
        CHECK(std::abs(y[size_t(j)] - (x[size_t(j)] * std::cos(theta) - x[size_t(j) + 1] * std::sin(theta))) < 1e-5);
        CHECK(std::abs(y[size_t(j) + 1] - (x[size_t(j)] * std::sin(theta) + x[size_t(j) + 1] * std::cos(theta))) < 1e-5);
    }
    // Without factors and scale it is the plain rotation.
    std::vector<float> plain = x, scaled1 = x;
    rope_f32(plain.data(), 1, hd, n_rot, pos, base);
    rope_f32(scaled1.data(), 1, hd, n_rot, pos, base, 1.0f, nullptr);
    CHECK(plain == scaled1);
}
