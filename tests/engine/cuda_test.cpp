// The CUDA backend against the CPU path (its reference), on a GPU: every kernel with
// random inputs within the tolerance stated at each check (the quantized products also
// bit for bit against the host emulation of cuda_emulate.hpp, which cuda_units_test.cpp
// checks against ggml's references without a GPU), then whole models (generated
// Llama, Qwen2 and Qwen3 models of every weight type and the Q4_K_M / Q5_K_M mixes) end
// to end, then the scheduler on the device.
//
// Without a CUDA device the binary says why and exits 77, which ctest reports as
// "Skipped" (never as passed): CI has no GPU, the device machine runs these
// (`make test-gpu`, also under compute-sanitizer).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "engine/cuda/device.hpp"
#include "engine/cuda/kernels.hpp"
#include "engine/kernels/attention.hpp"
#include "engine/kernels/matmul_f32.hpp"
#include "engine/kernels/matmul_quant.hpp"
#include "engine/kernels/matmul_q4_0.hpp"
#include "engine/kernels/matmul_q8_0.hpp"
#include "engine/kernels/rmsnorm.hpp"
#include "engine/kernels/rope.hpp"
#include "engine/kernels/swiglu.hpp"
#include "tests/engine/cuda_emulate.hpp"
#include "tests/engine/tiny_engine.hpp"

namespace reprise::engine {
namespace {

using cuda::ActFormat;
using cuda::DevWeight;
using cuda::WeightType;
using test::HostAct;
using test::HostWeight;

// A device array, filled from and read back to host vectors (legacy default stream:
// cudaMemcpy waits for the kernels before it).
template <class T>
struct Dev {
    T* p = nullptr;
    size_t n = 0;
    explicit Dev(size_t count) : n(count) { REQUIRE(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(T)) == cudaSuccess); }
    explicit Dev(const std::vector<T>& v) : Dev(v.size()) { up(v); }
    ~Dev() { cudaFree(p); }
    Dev(const Dev&) = delete;
    Dev& operator=(const Dev&) = delete;
    void up(const std::vector<T>& v) { REQUIRE(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess); }
    std::vector<T> down() const {
        std::vector<T> v(n);
        REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
        REQUIRE(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
        return v;
    }
};

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = u(rng);
    return v;
}

// |a - b| <= tol * max(1, |b|), elementwise, reporting the worst.
void check_close(const std::vector<float>& got, const std::vector<float>& want, float tol, const char* what) {
    REQUIRE(got.size() == want.size());
    float worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const float err = std::fabs(got[i] - want[i]) / std::max(1.0f, std::fabs(want[i]));
        if (!(err <= worst)) worst = err, at = i;  // NaN is the worst
    }
    INFO(what << ": worst relative error " << worst << " at " << at << " (got " << got[at] << ", want " << want[at] << ")");
    CHECK(worst <= tol);
}

// A quantized weight on the device (repack.hpp's layout), plus the host copy (ggml's
// blocks for the CPU references, the repacked arrays for the emulation).
struct QWeight {
    HostWeight h;
    std::unique_ptr<Dev<uint8_t>> qs;
    std::unique_ptr<Dev<uint32_t>> qh;
    std::unique_ptr<Dev<uint16_t>> d, m;
    DevWeight w;
};

QWeight upload(HostWeight h) {
    QWeight q;
    q.h = std::move(h);
    q.w = q.h.w;
    q.qs = std::make_unique<Dev<uint8_t>>(q.h.packed.qs);
    q.w.qs = reinterpret_cast<const int8_t*>(q.qs->p);
    if (!q.h.packed.qh.empty()) q.qh = std::make_unique<Dev<uint32_t>>(q.h.packed.qh), q.w.qh = q.qh->p;
    if (!q.h.packed.d.empty()) q.d = std::make_unique<Dev<uint16_t>>(q.h.packed.d), q.w.d = q.d->p;
    if (!q.h.packed.m.empty()) q.m = std::make_unique<Dev<uint16_t>>(q.h.packed.m), q.w.m = q.m->p;
    return q;
}

// Random floats quantized by ggml's reference quantizer of the type: real blocks.
QWeight make_qweight(GgmlType type, int rows, int cols, uint32_t seed) {
    const auto f = random_floats(size_t(rows) * cols, seed);
    uint64_t row_bytes = 0;
    REQUIRE(ggml_row_size(uint32_t(type), uint64_t(cols), &row_bytes));
    std::vector<uint8_t> blocks(size_t(rows) * row_bytes);
    for (int r = 0; r < rows; ++r) REQUIRE(quantize_row(uint32_t(type), &f[size_t(r) * cols], &blocks[size_t(r) * row_bytes], cols));
    HostWeight h;
    REQUIRE(test::make_host_weight(type, std::move(blocks), rows, cols, &h));
    return upload(std::move(h));
}

TEST_CASE("cuda kernel: quantize_q8_0 equals quantize_row_q8_0_ref bit for bit") {
    const int n = 5, cols = 256;
    auto x = random_floats(size_t(n) * cols, 1, 3.0f);
    std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero block: d = 0, q = 0
    Dev<float> dx(x);
    Dev<int8_t> qs(size_t(n) * cols);
    Dev<float> d(size_t(n) * cols / 32);
    cuda::quantize_q8_0(dx.p, n, cols, cuda::DevQ8{qs.p, d.p}, nullptr);
    const auto got_q = qs.down();
    const auto got_d = d.down();
    std::vector<BlockQ8_0> ref(size_t(n) * cols / 32);
    quantize_activations_q8_0(x.data(), n, cols, ref.data());
    for (size_t b = 0; b < ref.size(); ++b) {
        CHECK(got_d[b] == fp16_to_fp32(ref[b].d));
        for (int j = 0; j < 32; ++j) CHECK(got_q[b * 32 + size_t(j)] == ref[b].qs[j]);
    }
}

TEST_CASE("cuda kernel: quantize_q8_1 equals quantize_row_q8_1_ref bit for bit") {
    const int n = 5, cols = 256;
    auto x = random_floats(size_t(n) * cols, 2, 3.0f);
    std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero block: d = 0, q = 0, s = 0
    Dev<float> dx(x);
    Dev<int8_t> qs(size_t(n) * cols);
    Dev<float> d(size_t(n) * cols / 32), sums(size_t(n) * cols / 32);
    cuda::quantize_q8_1(dx.p, n, cols, cuda::DevQ8{qs.p, d.p, sums.p}, nullptr);
    const auto got_q = qs.down();
    const auto got_d = d.down();
    const auto got_s = sums.down();
    std::vector<BlockQ8_1> ref(size_t(n) * cols / 32);
    quantize_row_q8_1_ref(x.data(), ref.data(), int64_t(n) * cols);
    int mismatches = 0;
    for (size_t b = 0; b < ref.size(); ++b) {
        mismatches += got_d[b] != fp16_to_fp32(ref[b].d);
        mismatches += got_s[b] != fp16_to_fp32(ref[b].s);
        for (int j = 0; j < 32; ++j) mismatches += got_q[b * 32 + size_t(j)] != ref[b].qs[j];
    }
    CHECK(mismatches == 0);
}

TEST_CASE("cuda kernel: quantize_q8_K equals quantize_row_q8_K_ref bit for bit (ties, zero blocks)") {
    const int n = 3, cols = 1024;
    auto x = random_floats(size_t(n) * cols, 3, 3.0f);
    std::fill(x.begin() + 256, x.begin() + 512, 0.0f);  // an all-zero block: d = 0, q = 0, bsums = 0
    // Equal magnitudes of both signs: the first one sets the sign of the scale.
    x[1024 + 7] = -5.0f, x[1024 + 200] = 5.0f;
    x[1536 + 100] = 4.0f, x[1536 + 31] = -4.0f;
    Dev<float> dx(x);
    Dev<int8_t> qs(size_t(n) * cols);
    Dev<float> d(size_t(n) * cols / 256);
    Dev<int16_t> bsums(size_t(n) * cols / 16);
    cuda::quantize_q8_K(dx.p, n, cols, cuda::DevQ8{qs.p, d.p, nullptr, bsums.p}, nullptr);
    const auto got_q = qs.down();
    const auto got_d = d.down();
    const auto got_b = bsums.down();
    std::vector<BlockQ8_K> ref(size_t(n) * cols / 256);
    quantize_row_q8_K_ref(x.data(), ref.data(), int64_t(n) * cols);
    int mismatches = 0;
    for (size_t b = 0; b < ref.size(); ++b) {
        mismatches += got_d[b] != ref[b].d;
        for (int j = 0; j < 256; ++j) mismatches += got_q[b * 256 + size_t(j)] != ref[b].qs[j];
        for (int j = 0; j < 16; ++j) mismatches += got_b[b * 16 + size_t(j)] != ref[b].bsums[j];
    }
    CHECK(mismatches == 0);
}

// Activations on the device in a format's layout (formats.hpp), from test::random_act.
struct QAct {
    HostAct h;
    std::unique_ptr<Dev<int8_t>> qs;
    std::unique_ptr<Dev<float>> d, s;
    std::unique_ptr<Dev<int16_t>> bsums;
    cuda::DevQ8 dev() const { return {qs->p, d->p, s ? s->p : nullptr, bsums ? bsums->p : nullptr}; }
    // Tokens t0.. of the same arrays.
    cuda::DevQ8 from(int t0) const {
        const size_t t = size_t(t0), cols = size_t(h.cols);
        const size_t per_d = h.format == ActFormat::Q8_K ? cols / 256 : cols / 32;
        return {qs->p + t * cols, d->p + t * per_d, s ? s->p + t * cols / 32 : nullptr,
                bsums ? bsums->p + t * cols / 16 : nullptr};
    }
};

QAct make_qact(ActFormat f, int n, int cols, uint32_t seed) {
    QAct a;
    a.h = test::random_act(f, n, cols, seed);
    a.qs = std::make_unique<Dev<int8_t>>(a.h.qs);
    a.d = std::make_unique<Dev<float>>(a.h.d);
    if (!a.h.s.empty()) a.s = std::make_unique<Dev<float>>(a.h.s);
    if (!a.h.bsums.empty()) a.bsums = std::make_unique<Dev<int16_t>>(a.h.bsums);
    return a;
}

void check_q_products(GgmlType type) {
    const int rows = 97, cols = 512, n = 37;  // rows and tokens off every tile size on purpose
    QWeight w = make_qweight(type, rows, cols, 7);
    QAct x = make_qact(cuda::act_format(w.w.type), n, cols, 8);
    Dev<float> y(size_t(n) * rows);
    cuda::matmul_q(w.w, x.dev(), n, y.p, nullptr);
    const auto batched = y.down();
    // The device runs q_units.cuh's code: the host emulation of it is exact.
    CHECK(batched == test::emulate_product(w.h.w, x.h.view(), n));
    // Reference: ggml's scalar dot per (row, token). Tolerance: the integer dots are
    // exact on both sides, only the float sum of the scaled block (or sub-block) terms
    // differs in order: 1e-5 relative to max(1, |y|).
    std::vector<float> want(size_t(n) * rows);
    for (int t = 0; t < n; ++t)
        for (int r = 0; r < rows; ++r)
            want[size_t(t) * rows + size_t(r)] =
                test::vec_dot_ref(type, cols, w.h.blocks.data() + size_t(r) * w.h.row_bytes, x.h.row_blocks(t));
    check_close(batched, want, 1e-5f, ggml_type_name(uint32_t(type)).data());
    // Batch invariance: each token alone (matvec, n = 1) and in groups of 1..8 gives
    // exactly the batched result.
    for (int group : {1, 3, 8}) {
        for (int t0 = 0; t0 + group <= n; t0 += group) {
            Dev<float> yp(size_t(group) * rows);
            cuda::matvec_q(w.w, x.from(t0), group, yp.p, nullptr);
            const auto got = yp.down();
            for (size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == batched[size_t(t0) * rows + i]);
        }
    }
}

TEST_CASE("cuda kernel: quantized matvec and matmul of every type against ggml's vec_dot references, batch invariant") {
    for (GgmlType type : test::kQuantTypes) {
        CAPTURE(std::string(ggml_type_name(uint32_t(type))));
        check_q_products(type);
    }
}

TEST_CASE("cuda kernel: F32 matmul against dot_f32_ref, batch invariant") {
    const int rows = 53, cols = 128, n = 20;
    const auto wv = random_floats(size_t(rows) * cols, 3), xv = random_floats(size_t(n) * cols, 4);
    Dev<float> dw(wv), dx(xv), y(size_t(n) * rows);
    DevWeight w;
    w.type = WeightType::F32, w.rows = rows, w.cols = cols, w.f = dw.p;
    cuda::matmul_f32(w, dx.p, n, y.p, nullptr);
    const auto got = y.down();
    std::vector<float> want(got.size());
    for (int t = 0; t < n; ++t)
        for (int r = 0; r < rows; ++r) want[size_t(t) * rows + size_t(r)] = dot_f32_ref(&wv[size_t(r) * cols], &xv[size_t(t) * cols], cols);
    check_close(got, want, 1e-5f, "matmul F32");  // summation order only
    Dev<float> one(rows);
    cuda::matmul_f32(w, dx.p + 5 * cols, 1, one.p, nullptr);
    const auto alone = one.down();
    for (int r = 0; r < rows; ++r) CHECK(alone[size_t(r)] == got[size_t(5) * rows + size_t(r)]);
}

TEST_CASE("cuda kernel: embedding rows equal dequantize_row for F32 and every quantized table") {
    const int rows = 40, cols = 512;
    const std::vector<int32_t> ids = {3, -1, 39, 0, 3};  // -1: a row the kernel must leave alone
    const auto f = random_floats(size_t(rows) * cols, 11);
    {
        Dev<float> f32(f);
        DevWeight table;
        table.type = WeightType::F32, table.rows = rows, table.cols = cols, table.f = f32.p;
        std::vector<float> want(ids.size() * cols, 42.0f);
        for (size_t t = 0; t < ids.size(); ++t)
            if (ids[t] >= 0) std::memcpy(&want[t * cols], &f[size_t(ids[t]) * cols], cols * sizeof(float));
        Dev<int32_t> dids(ids);
        Dev<float> out(std::vector<float>(ids.size() * cols, 42.0f));
        cuda::embed_rows(table, dids.p, int(ids.size()), out.p, nullptr);
        CHECK(out.down() == want);
    }
    for (GgmlType type : test::kQuantTypes) {
        CAPTURE(std::string(ggml_type_name(uint32_t(type))));
        QWeight q = make_qweight(type, rows, cols, 11);
        std::vector<float> want(ids.size() * cols, 42.0f);
        for (size_t t = 0; t < ids.size(); ++t)
            if (ids[t] >= 0)
                REQUIRE(dequantize_row(uint32_t(type), q.h.blocks.data() + size_t(ids[t]) * q.h.row_bytes, &want[t * cols], cols));
        Dev<int32_t> dids(ids);
        Dev<float> out(std::vector<float>(ids.size() * cols, 42.0f));
        cuda::embed_rows(q.w, dids.p, int(ids.size()), out.p, nullptr);
        CHECK(out.down() == want);  // exact: the same operations on the same numbers
    }
}

TEST_CASE("cuda kernel: rmsnorm (with a row index list) against rmsnorm_f32") {
    const int n = 320, n_rows = 4;
    const auto x = random_floats(size_t(7) * n, 5, 4.0f), w = random_floats(n, 6);
    const std::vector<int32_t> rows = {6, 0, 3, 3};
    Dev<float> dx(x), dw(w), y(size_t(n_rows) * n);
    Dev<int32_t> drows(rows);
    cuda::rmsnorm(dx.p, drows.p, dw.p, y.p, n_rows, n, 1e-5f, nullptr);
    std::vector<float> want(size_t(n_rows) * n);
    for (int i = 0; i < n_rows; ++i) rmsnorm_f32(&want[size_t(i) * n], &x[size_t(rows[size_t(i)]) * n], w.data(), n, 1e-5f);
    // Both sum squares in double; the scale can differ in its last bit: 1e-6.
    check_close(y.down(), want, 1e-6f, "rmsnorm");
}

TEST_CASE("cuda kernel: rope from the host's cos/sin table equals rope_f32") {
    const int n_tok = 6, n_heads = 4, head_dim = 32, n_rot = 24, positions = 3000;
    const std::vector<int32_t> pos = {0, 1, 17, 1000, 2999, 5};
    auto x = random_floats(size_t(n_tok) * n_heads * head_dim, 9);
    std::vector<float> cs(size_t(positions) * n_rot);
    for (int p = 0; p < positions; ++p) rope_cos_sin(&cs[size_t(p) * n_rot], n_rot, p, 500000.0f);
    Dev<float> dx(x), dcs(cs);
    Dev<int32_t> dpos(pos);
    const auto x0 = x;
    cuda::rope(dx.p, dpos.p, n_tok, n_heads, head_dim, n_rot, dcs.p, false, nullptr);
    for (int t = 0; t < n_tok; ++t) rope_f32(&x[size_t(t) * n_heads * head_dim], n_heads, head_dim, n_rot, pos[size_t(t)], 500000.0f);
    // Same angles, same rounding of each product (no contraction on either side).
    check_close(dx.down(), x, 1e-7f, "rope");
    // NeoX pairs (j, j + n_rot/2), qwen2/qwen3's layout, from the same table.
    x = x0;
    dx.up(x);
    cuda::rope(dx.p, dpos.p, n_tok, n_heads, head_dim, n_rot, dcs.p, true, nullptr);
    for (int t = 0; t < n_tok; ++t)
        rope_neox_f32(&x[size_t(t) * n_heads * head_dim], n_heads, head_dim, n_rot, pos[size_t(t)], 500000.0f);
    check_close(dx.down(), x, 1e-7f, "rope neox");
}

TEST_CASE("cuda kernel: per-head rmsnorm and the bias add against the CPU (qwen3's Q/K norm, qwen2's biases)") {
    const int n_tok = 3, n_heads = 5, head_dim = 128;
    const auto x = random_floats(size_t(n_tok) * n_heads * head_dim, 14, 4.0f), w = random_floats(head_dim, 15);
    Dev<float> dx(x), dw(w);
    cuda::rmsnorm_heads(dx.p, dw.p, n_tok * n_heads, head_dim, 1e-6f, nullptr);
    std::vector<float> want = x;
    for (int r = 0; r < n_tok * n_heads; ++r)
        rmsnorm_f32(&want[size_t(r) * head_dim], &want[size_t(r) * head_dim], w.data(), head_dim, 1e-6f);
    check_close(dx.down(), want, 1e-6f, "rmsnorm_heads");  // as rmsnorm: the scale's last bit
    const int width = 96;
    const auto y = random_floats(size_t(n_tok) * width, 16), b = random_floats(width, 17);
    Dev<float> dy(y), db(b);
    cuda::add_bias(dy.p, db.p, n_tok, width, nullptr);
    std::vector<float> sum(y.size());
    for (size_t i = 0; i < y.size(); ++i) sum[i] = y[i] + b[i % width];
    CHECK(dy.down() == sum);  // one float add: exact
}

TEST_CASE("cuda kernel: swiglu and the residual add against the CPU") {
    const size_t n = 1000;
    const auto g = random_floats(n, 12, 6.0f), u = random_floats(n, 13);
    Dev<float> dg(g), du(u), out(n);
    cuda::swiglu(out.p, dg.p, du.p, n, nullptr);
    std::vector<float> want(n);
    swiglu_f32(want.data(), g.data(), u.data(), int(n));
    check_close(out.down(), want, 2e-6f, "swiglu");  // expf: 2 ulp
    cuda::add_inplace(dg.p, du.p, n, nullptr);
    std::vector<float> sum(n);
    for (size_t i = 0; i < n; ++i) sum[i] = g[i] + u[i];
    CHECK(dg.down() == sum);
}

TEST_CASE("cuda kernel: kv_write and paged attention against attention_f32 through shuffled block tables") {
    const int n_layer = 2, n_head = 8, n_head_kv = 2, head_dim = 64, bs = 16, n_blocks = 24;
    const int EKV = n_head_kv * head_dim;
    KvBlockPool pool(n_layer, EKV, bs, n_blocks);
    const size_t pool_floats = size_t(n_blocks) * pool.block_stride();
    // Fill the whole pool with random K/V (host), then two sequences over scattered blocks.
    const auto fill = random_floats(pool_floats, 21);
    std::memcpy(pool.k(0, 0, 0), fill.data(), pool_floats * sizeof(float));
    const std::vector<std::vector<int32_t>> tables = {{7, 2, 19, 4, 11}, {0, 23, 5}};
    const std::vector<int> lengths = {70, 33};  // positions 0..len-1 valid; the last is written below
    Dev<float> dpool(fill);
    // Token t of the pass is each sequence's last position.
    std::vector<int32_t> flat, table_of, pos;
    for (size_t s = 0; s < tables.size(); ++s) {
        table_of.push_back(int32_t(flat.size()));
        flat.insert(flat.end(), tables[s].begin(), tables[s].end());
        pos.push_back(lengths[s] - 1);
    }
    const int n_tok = int(pos.size()), layer = 1;
    const auto k_new = random_floats(size_t(n_tok) * EKV, 22), v_new = random_floats(size_t(n_tok) * EKV, 23);
    const auto q = random_floats(size_t(n_tok) * n_head * head_dim, 24);
    Dev<int32_t> dflat(flat), dtable_of(table_of), dpos(pos);
    Dev<float> dk(k_new), dv(v_new), dq(q), out(size_t(n_tok) * n_head * head_dim);
    cuda::DevKv kv;
    kv.base = dpool.p, kv.tables = dflat.p, kv.table_of = dtable_of.p, kv.pos = dpos.p;
    kv.block_size = bs, kv.block_stride = pool.block_stride(), kv.row_stride = EKV;
    kv.k_offset = pool.k_offset(layer), kv.v_offset = pool.v_offset(layer);
    cuda::kv_write(kv, dk.p, dv.p, n_tok, nullptr);
    cuda::attention_paged(kv, dq.p, n_tok, n_head, n_head_kv, head_dim, out.p, nullptr);

    // The CPU: the same writes into the host pool, then attention_f32 per token.
    std::vector<float> want(out.n);
    for (int t = 0; t < n_tok; ++t) {
        const int p = pos[size_t(t)];
        const int block = tables[size_t(t)][size_t(p / bs)];
        std::memcpy(pool.k(block, layer, p % bs), &k_new[size_t(t) * EKV], EKV * sizeof(float));
        std::memcpy(pool.v(block, layer, p % bs), &v_new[size_t(t) * EKV], EKV * sizeof(float));
        const KvView view{pool.data(), tables[size_t(t)].data(), bs, pool.block_stride(), pool.k_offset(layer),
                          pool.v_offset(layer), size_t(EKV)};
        std::vector<float> scratch(size_t(p) + 1);
        attention_f32(&q[size_t(t) * n_head * head_dim], view, p + 1, n_head, n_head_kv, head_dim,
                      &want[size_t(t) * n_head * head_dim], scratch.data());
    }
    std::vector<float> host_pool(pool_floats);
    std::memcpy(host_pool.data(), pool.data(), pool_floats * sizeof(float));
    CHECK(dpool.down() == host_pool);  // kv_write: exact, and nothing else touched
    // Online vs two-pass softmax and a different summation order: 1e-5.
    check_close(out.down(), want, 1e-5f, "attention");
}

// ---- whole models

TinyLlamaShape model_shape(GgmlType type, const char* name) {
    TinyLlamaShape s;
    s.n_embd = 256, s.n_ff = 512, s.n_layer = 4, s.n_head = 4, s.n_head_kv = 2, s.n_ctx = 512;
    s.type = type;
    s.seed = 5;
    s.name = name;
    return s;
}

std::vector<TokenId> greedy(const Model& m, const std::vector<TokenId>& prompt, int n, std::vector<float>* first_logits) {
    auto kv = m.new_kv_cache(int(prompt.size()) + n);
    REQUIRE(kv);
    std::vector<float> logits(size_t(m.n_vocab()));
    REQUIRE(m.forward(*kv, prompt.data(), int(prompt.size()), 0, logits.data()).ok());
    if (first_logits) *first_logits = logits;
    std::vector<TokenId> out;
    for (int i = 0; i < n; ++i) {
        const TokenId t = TokenId(std::max_element(logits.begin(), logits.end()) - logits.begin());
        out.push_back(t);
        if (i + 1 < n) REQUIRE(m.forward(*kv, &t, 1, int(prompt.size()) + i, logits.data()).ok());
    }
    return out;
}

TEST_CASE("cuda model: greedy output identical to the CPU path for F32, Q8_0 and Q4_0 models") {
    for (GgmlType type : {GgmlType::F32, GgmlType::Q8_0, GgmlType::Q4_0}) {
        const std::string name = std::string("cuda-e2e-") + std::string(ggml_type_name(uint32_t(type)));
        CAPTURE(name);
        auto cpu = test::TinyEngine::make(model_shape(type, name.c_str()));
        auto gpu = test::TinyEngine::make(model_shape(type, name.c_str()), Device::Cuda);
        REQUIRE(std::string(gpu.model->device()) == "cuda");
        for (uint64_t seed : {1, 2, 3}) {
            const auto prompt = test::random_prompt(seed, 40 + int(seed) * 17);
            std::vector<float> lc, lg;
            const auto want = greedy(*cpu.model, prompt, 64, &lc);
            const auto got = greedy(*gpu.model, prompt, 64, &lg);
            CHECK(got == want);
            // Logits after the prompt: summation order only (and, for quantized models, an
            // activation that lands on a rounding boundary): 1e-3 relative to max(1, |x|).
            check_close(lg, lc, 1e-3f, "prompt logits");
        }
    }
}

// The CPU's greedy continuation of a prompt, teacher-forced through both paths: the
// device's logits at every position within 1e-3 relative to max(1, |x|) of the CPU's
// (summation order, and an activation that lands on a rounding boundary of its
// quantization), its argmax the CPU's token wherever the CPU's top two logits are
// further apart than twice that (greedy text equal away from near ties), and its
// token-by-token decode equal to its own prefill bit for bit (batch invariance: matvec
// and matmul, graphs and plain launches, give every token the same result).
void check_model_agrees(const TinyLlamaShape& shape) {
    auto cpu = test::TinyEngine::make(shape);
    auto gpu = test::TinyEngine::make(shape, Device::Cuda);
    REQUIRE(std::string(gpu.model->device()) == "cuda");
    const int V = cpu.model->n_vocab(), n_gen = 24;
    for (uint64_t seed : {1, 2}) {
        CAPTURE(seed);
        auto seq = test::random_prompt(seed, 30 + int(seed) * 11);
        const int n_prompt = int(seq.size());
        const auto gen = greedy(*cpu.model, seq, n_gen, nullptr);
        seq.insert(seq.end(), gen.begin(), gen.end() - 1);  // position p predicts seq[p + 1]
        const int n = int(seq.size());
        auto all_logits = [&](const Model& m) {
            auto kv = m.new_kv_cache(n);
            REQUIRE(kv);
            std::vector<float> logits(size_t(n) * V);
            REQUIRE(m.forward(*kv, seq.data(), n, 0, logits.data(), true).ok());
            return logits;
        };
        const auto lc = all_logits(*cpu.model), lg = all_logits(*gpu.model);
        check_close(lg, lc, 1e-3f, "teacher-forced logits");
        int decided = 0;
        for (int p = n_prompt - 1; p < n; ++p) {
            const float* c = &lc[size_t(p) * V];
            const float* g = &lg[size_t(p) * V];
            std::vector<float> sorted(c, c + V);
            std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
            if (sorted[0] - sorted[1] <= 2e-3f * std::max(1.0f, std::fabs(sorted[0]))) continue;  // a near tie
            ++decided;
            CHECK(std::max_element(g, g + V) - g == std::max_element(c, c + V) - c);
        }
        CHECK(decided > n_gen / 2);  // the check above did run
        // Token by token on the device after a prefill of the prompt: bit for bit.
        auto kv = gpu.model->new_kv_cache(n);
        REQUIRE(kv);
        std::vector<float> step(static_cast<size_t>(V));
        REQUIRE(gpu.model->forward(*kv, seq.data(), n_prompt, 0, step.data()).ok());
        CHECK(std::memcmp(step.data(), &lg[size_t(n_prompt - 1) * V], sizeof(float) * V) == 0);
        for (int p = n_prompt; p < n; ++p) {
            REQUIRE(gpu.model->forward(*kv, &seq[size_t(p)], 1, p, step.data()).ok());
            CHECK(std::memcmp(step.data(), &lg[size_t(p) * V], sizeof(float) * V) == 0);
        }
    }
}

TEST_CASE("cuda model: llama models of every new weight type and the K-quant mixes agree with the CPU path") {
    struct Case { GgmlType type; QuantMix mix; uint32_t n_embd; };
    const Case cases[] = {
        {GgmlType::Q4_1, QuantMix::Pure, 256}, {GgmlType::Q5_0, QuantMix::Pure, 256}, {GgmlType::Q5_1, QuantMix::Pure, 256},
        {GgmlType::Q4_K, QuantMix::Pure, 256}, {GgmlType::Q5_K, QuantMix::Pure, 256}, {GgmlType::Q6_K, QuantMix::Pure, 256},
        {GgmlType::F32, QuantMix::Q4_K_M, 256}, {GgmlType::F32, QuantMix::Q5_K_M, 256},
        // 384-wide rows are not whole super-blocks: llama.cpp's fallbacks (Q5_0, Q5_1, Q8_0)
        // beside the K-quants of the 1024-wide down projection.
        {GgmlType::F32, QuantMix::Q4_K_M, 384}, {GgmlType::F32, QuantMix::Q5_K_M, 384}};
    for (const Case& c : cases) {
        const std::string name = std::string("cuda-llama-") + std::string(ggml_type_name(uint32_t(c.type))) + "-" +
                                 std::to_string(int(c.mix)) + "-" + std::to_string(c.n_embd);
        CAPTURE(name);
        auto shape = model_shape(c.type, name.c_str());
        shape.mix = c.mix;
        shape.n_embd = c.n_embd, shape.n_head = c.n_embd / 64, shape.n_ff = 2 * c.n_embd + 256;
        check_model_agrees(shape);
    }
}

TEST_CASE("cuda model: qwen2 (Q/K/V biases, NeoX RoPE) and qwen3 (per-head Q/K norm, head size != dim/heads) agree with the CPU path") {
    struct Case { ModelArch arch; GgmlType type; QuantMix mix; bool tied; uint32_t head_dim; };
    const Case cases[] = {{ModelArch::Qwen2, GgmlType::F32, QuantMix::Pure, true, 0},
                          {ModelArch::Qwen2, GgmlType::Q8_0, QuantMix::Pure, false, 0},
                          {ModelArch::Qwen2, GgmlType::F32, QuantMix::Q4_K_M, true, 0},
                          {ModelArch::Qwen3, GgmlType::F32, QuantMix::Pure, false, 128},
                          {ModelArch::Qwen3, GgmlType::F32, QuantMix::Q5_K_M, true, 128},
                          {ModelArch::Qwen3, GgmlType::Q4_0, QuantMix::Pure, false, 0}};
    int i = 0;
    for (const Case& c : cases) {
        const std::string name = std::string("cuda-qwen-") + std::to_string(i++);
        CAPTURE(name);
        auto shape = model_shape(c.type, name.c_str());
        shape.arch = c.arch;
        shape.mix = c.mix;
        shape.tie_output = c.tied;
        shape.head_dim = c.head_dim;  // qwen3: Q is n_head * 128 = 512 wide, wo maps it back to 256
        check_model_agrees(shape);
    }
}

TEST_CASE("cuda model: CUDA graphs change nothing (graph replay equals plain launches)") {
    auto shape = model_shape(GgmlType::Q8_0, "cuda-graphs");
    auto with = test::TinyEngine::make(shape, Device::Cuda);
    ::setenv("REPRISE_CUDA_GRAPHS", "0", 1);
    auto without = test::TinyEngine::make(shape, Device::Cuda);
    ::unsetenv("REPRISE_CUDA_GRAPHS");
    const auto prompt = test::random_prompt(9, 30);
    std::vector<float> a, b;
    CHECK(greedy(*with.model, prompt, 48, &a) == greedy(*without.model, prompt, 48, &b));
    CHECK(a == b);
}

void check_scheduler(TinyLlamaShape shape) {
    shape.late_layer_scale = 0.2f, shape.late_from = 2;  // a draft model that agrees often
    auto gpu = test::TinyEngine::make(shape, Device::Cuda);
    auto cpu = test::TinyEngine::make(shape);
    for (int exit_layer : {0, 2}) {
        CAPTURE(exit_layer);
        SchedulerOptions o;
        o.n_ctx = 512;
        o.exit_layer = exit_layer;
        o.draft_tokens = 3;
        auto run = [&](const test::TinyEngine& t, const std::vector<int>& which, float temperature) {
            Scheduler s(*t.model, *t.tokenizer, {}, o);
            REQUIRE(s.kv_ready());
            std::vector<std::shared_ptr<test::JobOutcome>> outs;
            for (int i : which) {
                outs.push_back(std::make_shared<test::JobOutcome>());
                s.add(test::job(i % 3 + 1, 40, temperature, 100 + uint64_t(i)), test::collect(outs.back(), i % 3 + 1),
                      test::random_prompt(uint64_t(i), 20 + 9 * i));
            }
            test::run_to_idle(s);
            std::vector<std::vector<TokenId>> tokens;
            for (auto& out : outs) {
                REQUIRE(out->ok);
                for (auto& sample : out->completion.samples) tokens.push_back(sample.tokens);
            }
            return tokens;
        };
        const std::vector<int> all = {0, 1, 2, 3, 4, 5, 6, 7};
        for (float temperature : {0.0f, 1.0f}) {
            CAPTURE(temperature);
            const auto together = run(gpu, all, temperature);
            std::vector<std::vector<TokenId>> alone;
            for (int i : all)
                for (auto& t : run(gpu, {i}, temperature)) alone.push_back(t);
            CHECK(together == alone);  // batch invariance on the device
            if (temperature == 0.0f) CHECK(together == run(cpu, all, temperature));
        }
    }
}

TEST_CASE("cuda scheduler: batched, shared-prefix, speculative runs equal runs alone, and the CPU's greedy output") {
    check_scheduler(model_shape(GgmlType::Q8_0, "cuda-sched"));
}

TEST_CASE("cuda scheduler: the same on a qwen3 Q4_K_M model (K-quants, Q/K norms, NeoX RoPE, head size 128)") {
    auto shape = model_shape(GgmlType::F32, "cuda-sched-qwen3");
    shape.arch = ModelArch::Qwen3, shape.mix = QuantMix::Q4_K_M, shape.head_dim = 128;
    check_scheduler(shape);
}

TEST_CASE("cuda model: a KV pool larger than the device is refused, not crashed") {
    // (device = cuda without a device is the e2e test's: it needs a machine without one.)
    auto t = test::TinyEngine::make(model_shape(GgmlType::Q8_0, "cuda-oom"), Device::Cuda);
    auto pool = t.model->new_kv_pool(16, 1 << 30);  // 2^30 blocks: petabytes
    CHECK(pool == nullptr);
    CHECK(t.model->new_kv_pool(16, 64) != nullptr);
}

}  // namespace
}  // namespace reprise::engine

int main(int argc, char** argv) {
    auto device = reprise::engine::cuda::probe_device();
    if (!device.ok()) {
        std::printf("cuda tests skipped: %s\n", device.error().c_str());
        return 77;  // ctest SKIP_RETURN_CODE
    }
    std::printf("cuda tests on %s (sm_%d, %zu MiB)\n", device->name.c_str(), device->compute_capability,
                device->memory_bytes >> 20);
    doctest::Context context(argc, argv);
    return context.run();
}
