// K-quants (Q4_K, Q5_K, Q6_K weights; Q8_K activations): ggml's reference
// (de)quantizers and the Q*_K x Q8_K kernels (scalar reference, AVX2, AVX512-VNNI,
// register tiles, threads), with explicit tolerances.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/ggml_types.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_writer.hpp"
#include "engine/kernels/cpu.hpp"
#include "engine/kernels/matmul_q4_k.hpp"
#include "engine/kernels/matmul_q5_k.hpp"
#include "engine/kernels/matmul_q6_k.hpp"
#include "engine/kernels/matmul_quant.hpp"
#include "engine/kernels/quantize_q8_k.hpp"
#include "engine/model.hpp"
#include "engine/model_maker.hpp"
#include "engine/thread_pool.hpp"
#include "random_vectors.hpp"

using namespace reprise::engine;

namespace {
using test::Lcg;
using test::randv;

// Bytes of a K-quant row and its dequantization through the generic entry points.
std::vector<uint8_t> quantize(GgmlType t, const std::vector<float>& x) {
    uint64_t bytes = 0;
    REQUIRE(ggml_row_size(uint32_t(t), x.size(), &bytes));
    std::vector<uint8_t> q(bytes);
    REQUIRE(quantize_row(uint32_t(t), x.data(), q.data(), int64_t(x.size())));
    return q;
}
std::vector<float> dequantize(GgmlType t, const std::vector<uint8_t>& q, size_t n) {
    std::vector<float> y(n);
    REQUIRE(dequantize_row(uint32_t(t), q.data(), y.data(), int64_t(n)));
    return y;
}

float matmul_one(GgmlType t, const void* w, const BlockQ8_K* x, int cols) {
    float y = 0;
    matmul_quantized(t, w, 1, cols, x, 1, &y, nullptr);
    return y;
}
}  // namespace

TEST_CASE("kquant: Q8_K of a fixed vector (iscale = -127 / the value of largest magnitude)") {
    std::vector<float> x(256);
    for (int j = 0; j < 256; ++j) x[size_t(j)] = float(j - 128) / 128.0f;  // x[0] = -1: the extreme
    BlockQ8_K b;
    quantize_row_q8_K_ref(x.data(), &b, 256);
    CHECK(b.d == 1.0f / 127.0f);  // 1 / iscale, iscale = -127 / -1
    CHECK(b.qs[0] == -127);
    CHECK(b.qs[128] == 0);
    CHECK(b.qs[255] == 126);  // 127 * 127/128 = 126.0078 -> 126
    CHECK(b.qs[64] == -64);   // 127 * -0.5 = -63.5: nearest_int rounds half to even
    CHECK(b.qs[192] == 64);   // 63.5 -> 64 (even)
    int s0 = 0;
    for (int j = 0; j < 16; ++j) s0 += b.qs[j];
    CHECK(b.bsums[0] == s0);
    for (int j = 0; j < 256; ++j) CHECK(std::fabs(b.qs[j] * b.d - x[size_t(j)]) <= 0.5f * b.d + 1e-7f);

    // Positive extreme: it maps to -127 too (the sign flips with iscale), and all-zero blocks are zero.
    for (auto& v : x) v = -v;
    quantize_row_q8_K_ref(x.data(), &b, 256);
    CHECK(b.qs[0] == -127);
    CHECK(b.d == -1.0f / 127.0f);
    std::vector<float> z(256, 0.0f);
    quantize_row_q8_K_ref(z.data(), &b, 256);
    CHECK(b.d == 0.0f);
    for (int j = 0; j < 16; ++j) CHECK(b.bsums[j] == 0);
}

TEST_CASE("kquant: Q4_K of exactly representable sub-blocks stores the integers") {
    // Every sub-block holds 0..15 twice: min 0 and scale 1 fit with zero error, so the
    // stored nibbles are the values, every 6-bit scale is 63 (d = 1/63) and every min 0.
    std::vector<float> x(256);
    for (int j = 0; j < 256; ++j) x[size_t(j)] = float(j % 16);
    BlockQ4_K b;
    quantize_row_q4_K_ref(x.data(), &b, 256);
    CHECK(b.d == fp32_to_fp16(1.0f / 63.0f));
    CHECK(b.dmin == 0);
    for (int j = 0; j < 4; ++j) {
        CHECK(b.scales[j] == (63 | (3 << 6)));  // 6 low bits of scale j, top bits of scale j+4
        CHECK(b.scales[j + 4] == 0);            // min j = 0, top bits of min j+4 = 0
        CHECK(b.scales[j + 8] == 0x0F);         // low 4 bits of scale j+4 (15), of min j+4 (0)
    }
    for (int j = 0; j < 128; ++j) {
        CHECK((b.qs[j] & 0xF) == (j % 32) % 16);
        CHECK((b.qs[j] >> 4) == (j % 32) % 16);
    }
    std::vector<float> y(256);
    dequantize_row_q4_K(&b, y.data(), 256);
    for (int j = 0; j < 256; ++j) CHECK(std::fabs(y[size_t(j)] - x[size_t(j)]) <= 15.0f / 1024);  // fp16 d
}

TEST_CASE("kquant: Q6_K of a block of -32..31 * s stores the integers") {
    // make_qx_quants maps the extreme (-32 s) to -32 exactly and every other value is an
    // integer multiple of s on that grid: no candidate scale beats it.
    std::vector<float> x(256);
    for (int j = 0; j < 256; ++j) x[size_t(j)] = 0.25f * float((j * 7) % 64 - 32);
    for (int g = 0; g < 16; ++g) x[size_t(16 * g)] = -8.0f;  // each group of 16 has the -32 step
    BlockQ6_K b;
    quantize_row_q6_K_ref(x.data(), &b, 256);
    std::vector<float> y(256);
    dequantize_row_q6_K(&b, y.data(), 256);
    for (int j = 0; j < 256; ++j) CHECK(std::fabs(y[size_t(j)] - x[size_t(j)]) <= 8.0f / 1024);  // fp16 d, int8 scales
}

TEST_CASE("kquant: round trips within the stated error (RMS relative to the data's RMS)") {
    // Worst block measured on these data (RMS error / RMS, max error / max |x|): Q4_K
    // 0.071 / 0.078, Q5_K 0.036 / 0.038, Q6_K 0.019 / 0.016 (4, 5 and 6 bits over a
    // sub-block's range); the bounds leave 25-55% headroom and fail for a wrong layout.
    struct Case { GgmlType t; double max_rel_rms; double max_rel_abs; };
    for (const Case c : {Case{GgmlType::Q4_K, 0.09, 0.10}, Case{GgmlType::Q5_K, 0.045, 0.05}, Case{GgmlType::Q6_K, 0.025, 0.025}}) {
        CAPTURE(ggml_type_name(uint32_t(c.t)));
        for (uint64_t seed : {1ull, 2ull, 3ull}) {
            auto x = randv(256 * 8, seed, 1.5f);
            for (size_t i = 0; i < x.size(); i += 97) x[i] *= 3.0f;  // some outliers
            for (size_t i = 0; i < 256; ++i) x[i] = std::fabs(x[i]);  // an all-positive block (min 0)
            for (size_t i = 256; i < 512; ++i) x[i] = -std::fabs(x[i]) - 0.5f;  // all-negative
            for (size_t i = 512; i < 768; ++i) x[i] = 0.0f;  // all zero: exact
            const auto q = quantize(c.t, x);
            const auto y = dequantize(c.t, q, x.size());
            for (int blk = 0; blk < 8; ++blk) {
                double e2 = 0, x2 = 0, emax = 0, amax = 0;
                for (int j = 0; j < 256; ++j) {
                    const double xv = x[size_t(256 * blk + j)], e = y[size_t(256 * blk + j)] - xv;
                    e2 += e * e;
                    x2 += xv * xv;
                    emax = std::max(emax, std::fabs(e));
                    amax = std::max(amax, std::fabs(xv));
                }
                CAPTURE(blk);
                if (blk == 2) {
                    CHECK(emax == 0.0);
                    continue;
                }
                CHECK(std::sqrt(e2 / x2) <= c.max_rel_rms);
                CHECK(emax <= c.max_rel_abs * amax);
            }
        }
    }
}

TEST_CASE("kquant: vec_dot reference equals dequantize + dot; SIMD paths within 1e-5 of it") {
    // The reference is ggml's generic dot (integer sums per block, float per block); a
    // dot of the dequantized values in double differs only by float rounding: 1e-5 of
    // sum |w*x| covers the per-block float products (2^-24 each) and fp16 scale products.
    const int cols = 256 * 6;
    auto W = randv(size_t(cols), 7, 2.0f), X = randv(size_t(cols), 8, 0.7f);
    std::vector<BlockQ8_K> xq(cols / 256);
    quantize_row_q8_K_ref(X.data(), xq.data(), cols);
    std::vector<float> dx(static_cast<size_t>(cols));
    for (int b = 0; b < cols / 256; ++b)
        for (int j = 0; j < 256; ++j) dx[size_t(256 * b + j)] = xq[size_t(b)].qs[j] * xq[size_t(b)].d;
    for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
        CAPTURE(ggml_type_name(uint32_t(t)));
        const auto q = quantize(t, W);
        const auto dw = dequantize(t, q, W.size());
        double ref = 0, mag = 0;
        for (int c = 0; c < cols; ++c) {
            ref += double(dw[size_t(c)]) * dx[size_t(c)];
            mag += std::fabs(double(dw[size_t(c)]) * dx[size_t(c)]);
        }
        float r = 0, s = 0;
        switch (t) {
            case GgmlType::Q4_K:
                r = vec_dot_q4_K_q8_K_ref(cols, reinterpret_cast<const BlockQ4_K*>(q.data()), xq.data());
                s = vec_dot_q4_K_q8_K(cols, reinterpret_cast<const BlockQ4_K*>(q.data()), xq.data());
                break;
            case GgmlType::Q5_K:
                r = vec_dot_q5_K_q8_K_ref(cols, reinterpret_cast<const BlockQ5_K*>(q.data()), xq.data());
                s = vec_dot_q5_K_q8_K(cols, reinterpret_cast<const BlockQ5_K*>(q.data()), xq.data());
                break;
            default:
                r = vec_dot_q6_K_q8_K_ref(cols, reinterpret_cast<const BlockQ6_K*>(q.data()), xq.data());
                s = vec_dot_q6_K_q8_K(cols, reinterpret_cast<const BlockQ6_K*>(q.data()), xq.data());
                break;
        }
        CHECK(mag > 1.0);
        CHECK(std::fabs(r - ref) <= 1e-5 * mag);
        CHECK(std::fabs(s - ref) <= 1e-5 * mag);
        CHECK(std::fabs(s - r) <= 1e-5 * mag);
        CHECK(matmul_one(t, q.data(), xq.data(), cols) == s);  // one row, one token: the decode path
    }
}

TEST_CASE("kquant: tiled matmuls - every ISA path, odd shapes, n_tok 1..9, 1..3 threads") {
    // Each SIMD path computes every (row, token) dot with the same exact integer lanes
    // and the same float order (kernels/qgemm_k.hpp): results are bit-identical across
    // AVX2 / AVX512-VNNI, tile shapes (n_tok 1..9 covers full tiles and remainders) and
    // thread splits, and equal to the one-token vec_dot. The scalar path is ggml's
    // generic dot, which adds in another order: within 1e-5 of sum |w*x| of it.
    std::vector<KernelIsa> isas{KernelIsa::Scalar};
    if (cpu_has_avx2()) isas.push_back(KernelIsa::Avx2);
    if (cpu_has_avx512vnni()) isas.push_back(KernelIsa::Avx512Vnni);
    MESSAGE("K-quant matmul paths tested: " << isas.size());
    ThreadPool pool2(2), pool3(3);
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
        for (int cols : {256, 768}) {
            for (int rows : {1, 3, 5, 17, 46}) {
                const int nb = cols / 256;
                auto W = randv(size_t(rows * cols), uint64_t(300 + rows + cols), 1.5f);
                const auto wq = quantize(type, W);
                uint64_t row_bytes = 0;
                REQUIRE(ggml_row_size(uint32_t(type), uint64_t(cols), &row_bytes));
                for (int ntok = 1; ntok <= 9; ++ntok) {
                    CAPTURE(ggml_type_name(uint32_t(type)));
                    CAPTURE(cols);
                    CAPTURE(rows);
                    CAPTURE(ntok);
                    auto X = randv(size_t(ntok * cols), uint64_t(400 + ntok), 0.5f);
                    std::vector<BlockQ8_K> xq(size_t(ntok * nb));
                    quantize_activations(ActType::Q8_K, X.data(), ntok, cols, xq.data(), nullptr);
                    auto dot = [&](bool ref, int r, int t) {
                        const void* w = wq.data() + size_t(r) * row_bytes;
                        const BlockQ8_K* x = &xq[size_t(t * nb)];
                        switch (type) {
                            case GgmlType::Q4_K:
                                return ref ? vec_dot_q4_K_q8_K_ref(cols, static_cast<const BlockQ4_K*>(w), x)
                                           : vec_dot_q4_K_q8_K(cols, static_cast<const BlockQ4_K*>(w), x);
                            case GgmlType::Q5_K:
                                return ref ? vec_dot_q5_K_q8_K_ref(cols, static_cast<const BlockQ5_K*>(w), x)
                                           : vec_dot_q5_K_q8_K(cols, static_cast<const BlockQ5_K*>(w), x);
                            default:
                                return ref ? vec_dot_q6_K_q8_K_ref(cols, static_cast<const BlockQ6_K*>(w), x)
                                           : vec_dot_q6_K_q8_K(cols, static_cast<const BlockQ6_K*>(w), x);
                        }
                    };
                    std::vector<float> first;  // the first SIMD path's results
                    for (KernelIsa isa : isas) {
                        kernels_set_max_isa(isa);
                        REQUIRE(kernels_isa() == isa);
                        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
                            std::vector<float> y(size_t(rows * ntok), -1.0f);
                            matmul_quantized(type, wq.data(), rows, cols, xq.data(), ntok, y.data(), pool);
                            bool all_ok = true;
                            for (int t = 0; t < ntok; ++t)
                                for (int r = 0; r < rows; ++r) {
                                    const float v = y[size_t(t * rows + r)];
                                    const float ref = dot(true, r, t);
                                    double mag = 0;  // sum |w*x| bounds the float rounding
                                    const auto dw = dequantize(type, std::vector<uint8_t>(wq.begin() + ptrdiff_t(size_t(r) * row_bytes),
                                                                                         wq.begin() + ptrdiff_t(size_t(r + 1) * row_bytes)),
                                                               size_t(cols));
                                    for (int c = 0; c < cols; ++c) {
                                        const BlockQ8_K& xb = xq[size_t(t * nb + c / 256)];
                                        mag += std::fabs(double(dw[size_t(c)]) * xb.qs[c % 256] * xb.d);
                                    }
                                    all_ok &= std::fabs(v - ref) <= 1e-5 * mag + 1e-30;
                                    all_ok &= v == (isa == KernelIsa::Scalar ? ref : dot(false, r, t));
                                }
                            CHECK(all_ok);
                            if (isa == KernelIsa::Scalar) continue;
                            if (first.empty())
                                first = y;
                            else
                                CHECK(y == first);  // AVX2 == AVX512-VNNI, any thread count
                        }
                    }
                    kernels_set_max_isa(KernelIsa::Avx512Vnni);
                }
            }
        }
    }
}

TEST_CASE("kquant: kernels_force_scalar runs ggml's generic dot") {
    const int cols = 512;
    auto W = randv(size_t(cols), 11), X = randv(size_t(cols), 12);
    std::vector<BlockQ8_K> xq(2);
    quantize_row_q8_K_ref(X.data(), xq.data(), cols);
    const auto q = quantize(GgmlType::Q6_K, W);
    kernels_force_scalar(true);
    const float scalar = matmul_one(GgmlType::Q6_K, q.data(), xq.data(), cols);
    kernels_force_scalar(false);
    CHECK(scalar == vec_dot_q6_K_q8_K_ref(cols, reinterpret_cast<const BlockQ6_K*>(q.data()), xq.data()));
}

TEST_CASE("kquant: the SIMD Q8_K quantizer is ggml's reference bit for bit") {
    // Ties of opposite sign (the first decides the sign of d), an all-zero block, values
    // that land on .5 after scaling (round half to even), tiny and huge magnitudes.
    const int n = 256 * 6;
    auto x = randv(size_t(n), 21, 3.0f);
    x[5] = -3.5f, x[9] = 3.5f;                               // block 0: tie, negative first
    x[256 + 7] = 4.0f, x[256 + 8] = -4.0f;                   // block 1: tie, positive first
    for (int j = 0; j < 256; ++j) x[size_t(512 + j)] = 0.0f;  // block 2: zero
    for (int j = 0; j < 256; ++j) x[size_t(768 + j)] = float(j % 255 - 127) / 127.0f * 1.5f;  // block 3: exact grid
    for (int j = 0; j < 256; ++j) x[size_t(1024 + j)] *= 1e-30f;  // block 4: tiny
    for (int j = 0; j < 256; ++j) x[size_t(1280 + j)] *= 1e30f;   // block 5: huge
    std::vector<BlockQ8_K> a(6), b(6);
    std::memset(a.data(), 0x55, a.size() * sizeof(BlockQ8_K));
    std::memset(b.data(), 0x55, b.size() * sizeof(BlockQ8_K));
    quantize_row_q8_K_ref(x.data(), a.data(), n);
    for (KernelIsa isa : {KernelIsa::Avx512Vnni, KernelIsa::Avx2, KernelIsa::Scalar}) {
        kernels_set_max_isa(isa);
        quantize_row_q8_K(x.data(), b.data(), n);
        CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(BlockQ8_K)) == 0);
    }
    kernels_set_max_isa(KernelIsa::Avx512Vnni);
    CHECK(a[0].d > 0);  // -127 / -3.5 < 0: d = 1/iscale > 0 for a negative extreme
    CHECK(a[1].d < 0);
}

TEST_CASE("kquant: Q4_K_M / Q5_K_M models - batch prefill equals token by token, threads and ISA paths, bit for bit") {
    // The mixes put Q4_K or Q5_K on most matrices and Q6_K on some (llama.cpp's rules);
    // rows of 256 and 512 values, so every K-quant kernel path runs in the model.
    const std::vector<uint8_t> vocab_bytes = builtin_vocab_gguf();
    auto vocab = GgufFile::from_memory(vocab_bytes.data(), vocab_bytes.size());
    REQUIRE(vocab.ok());
    std::vector<KernelIsa> isas{KernelIsa::Scalar};
    if (cpu_has_avx2()) isas.push_back(KernelIsa::Avx2);
    if (cpu_has_avx512vnni()) isas.push_back(KernelIsa::Avx512Vnni);
    for (QuantMix mix : {QuantMix::Q4_K_M, QuantMix::Q5_K_M}) {
        CAPTURE(int(mix));
        TinyLlamaShape s;
        s.n_embd = 256, s.n_ff = 512, s.n_layer = 2, s.n_head = 4, s.n_head_kv = 2, s.n_ctx = 64;
        s.mix = mix;
        GgufWriter w;
        REQUIRE(make_tiny_llama(s, **vocab, &w).ok());
        const std::vector<uint8_t> bytes = w.to_bytes();
        auto file = GgufFile::from_memory(bytes.data(), bytes.size());
        REQUIRE(file.ok());
        int n_q6 = 0;
        for (const char* name : {"blk.0.attn_v.weight", "blk.1.attn_v.weight", "blk.0.ffn_down.weight", "blk.1.ffn_down.weight", "output.weight"})
            n_q6 += (*file)->find_tensor(name) && GgmlType((*file)->find_tensor(name)->type) == GgmlType::Q6_K;
        CHECK(n_q6 > 0);
        const std::vector<int32_t> prompt = {7, 8, 9, 300, 17, 250, 400, 33, 90, 12, 500};
        const size_t n = prompt.size();
        std::vector<float> first;  // the first SIMD path's logits
        for (KernelIsa isa : isas) {
            kernels_set_max_isa(isa);
            CAPTURE(int(isa));
            ModelOptions o1, o3;
            o3.n_threads = 3;
            auto m1 = Model::from_gguf(**file, o1), m3 = Model::from_gguf(**file, o3);
            REQUIRE(m1.ok());
            REQUIRE(m3.ok());
            const size_t V = size_t((*m1)->n_vocab());
            std::vector<float> batch(n * V), seq(n * V), batch3(n * V), chunks(n * V);
            auto kv = (*m1)->new_kv_cache(32);
            REQUIRE((*m1)->forward(*kv, prompt.data(), int(n), 0, batch.data(), true).ok());
            auto kv2 = (*m1)->new_kv_cache(32);
            for (size_t t = 0; t < n; ++t) REQUIRE((*m1)->forward(*kv2, &prompt[t], 1, int(t), &seq[t * V]).ok());
            CHECK(batch == seq);
            auto kv3 = (*m3)->new_kv_cache(32);
            REQUIRE((*m3)->forward(*kv3, prompt.data(), int(n), 0, batch3.data(), true).ok());
            CHECK(batch3 == batch);
            auto kv4 = (*m3)->new_kv_cache(32);  // 3 + 8 tokens: tails and full tiles
            REQUIRE((*m3)->forward(*kv4, prompt.data(), 3, 0, chunks.data(), true).ok());
            REQUIRE((*m3)->forward(*kv4, prompt.data() + 3, int(n) - 3, 3, &chunks[3 * V], true).ok());
            CHECK(chunks == batch);
            if (isa == KernelIsa::Scalar) continue;
            if (first.empty())
                first = batch;
            else
                CHECK(batch == first);  // AVX2 == AVX512-VNNI
        }
        kernels_set_max_isa(KernelIsa::Avx512Vnni);
    }
}
