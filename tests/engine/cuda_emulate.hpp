#pragma once
// Host-side pieces shared by the CUDA tests: random ggml weight blocks and quantized
// activations of every format, the host arrays DevWeight / DevQ8 can point at (the
// kernels' unit code in engine/cuda/kernels/q_units.cuh runs on the host too), the
// warp's reduction emulated lane by lane, and the CPU references per type.
//
// cuda_units_test.cpp (engine_tests, no GPU needed) checks the emulation against
// ggml's references; cuda_test.cpp (a GPU) checks the device against the emulation
// bit for bit and against the references.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/cuda/formats.hpp"
#include "engine/cuda/kernels/q_units.cuh"
#include "engine/cuda/repack.hpp"
#include "engine/ggml_types.hpp"
#include "engine/kernels/matmul_q4_0.hpp"
#include "engine/kernels/matmul_q4_1.hpp"
#include "engine/kernels/matmul_q4_k.hpp"
#include "engine/kernels/matmul_q5_0.hpp"
#include "engine/kernels/matmul_q5_1.hpp"
#include "engine/kernels/matmul_q5_k.hpp"
#include "engine/kernels/matmul_q6_k.hpp"
#include "engine/kernels/matmul_q8_0.hpp"

namespace reprise::engine::test {

using cuda::ActFormat;
using cuda::DevQ8;
using cuda::DevWeight;
using cuda::WeightType;

inline constexpr GgmlType kQuantTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                                           GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

inline bool is_k_quant(GgmlType t) { return t == GgmlType::Q4_K || t == GgmlType::Q5_K || t == GgmlType::Q6_K; }

inline void put_fp16(uint8_t* p, float v) {
    const uint16_t h = fp32_to_fp16(v);
    std::memcpy(p, &h, 2);
}

// rows x cols of random blocks: every quant, scale and high bit random (all bit
// patterns, unlike a quantizer's output), the fp16 scales and minimums set to sizes
// real files have.
inline std::vector<uint8_t> random_weight_blocks(GgmlType t, int rows, int cols, uint32_t seed) {
    uint64_t row_bytes = 0;
    (void)ggml_row_size(uint32_t(t), uint64_t(cols), &row_bytes);
    std::vector<uint8_t> b(size_t(rows) * row_bytes);
    std::mt19937 rng(seed);
    for (auto& v : b) v = uint8_t(rng());
    std::uniform_real_distribution<float> scale(0.002f, 0.02f), minimum(-0.3f, 0.0f);
    const auto& tr = ggml_type_traits(uint32_t(t));
    const size_t n = b.size() / tr.type_size;
    for (size_t i = 0; i < n; ++i) {
        uint8_t* blk = b.data() + i * tr.type_size;
        switch (t) {
        case GgmlType::Q4_1:
        case GgmlType::Q5_1: put_fp16(blk, scale(rng)), put_fp16(blk + 2, minimum(rng)); break;
        case GgmlType::Q4_K:
        case GgmlType::Q5_K: put_fp16(blk, scale(rng) / 16), put_fp16(blk + 2, -minimum(rng) / 16); break;
        case GgmlType::Q6_K: put_fp16(blk + 208, scale(rng) / 16); break;
        default: put_fp16(blk, scale(rng)); break;  // Q8_0, Q4_0, Q5_0: d first
        }
    }
    return b;
}

// A matrix on the host in the device layout, and the DevWeight that reads it.
struct HostWeight {
    GgmlType type{};
    std::vector<uint8_t> blocks;  // ggml's, for the CPU references
    cuda::RepackedWeight packed;
    DevWeight w;
    size_t row_bytes = 0;
};

inline void point_at(HostWeight& h, int rows, int cols) {
    h.w = DevWeight{};
    (void)cuda::device_weight_type(h.type, &h.w.type);
    h.w.rows = rows, h.w.cols = cols;
    h.w.qs = reinterpret_cast<const int8_t*>(h.packed.qs.data());
    h.w.qh = h.packed.qh.empty() ? nullptr : h.packed.qh.data();
    h.w.d = h.packed.d.empty() ? nullptr : h.packed.d.data();
    h.w.m = h.packed.m.empty() ? nullptr : h.packed.m.data();
}

inline bool make_host_weight(GgmlType t, std::vector<uint8_t> blocks, int rows, int cols, HostWeight* h) {
    h->type = t;
    h->blocks = std::move(blocks);
    h->row_bytes = h->blocks.size() / size_t(rows);
    if (!cuda::repack_weight(t, h->blocks.data(), rows, cols, &h->packed)) return false;
    point_at(*h, rows, cols);
    return true;
}

// Activations of n tokens in one format: the device layout's arrays, ggml's blocks of
// the same numbers (for vec_dot_*_ref), and their values q * d as doubles.
struct HostAct {
    ActFormat format{};
    int n = 0, cols = 0;
    std::vector<int8_t> qs;
    std::vector<float> d, s;
    std::vector<int16_t> bsums;
    std::vector<uint8_t> blocks;
    std::vector<double> values;
    DevQ8 view() {
        return {qs.data(), d.data(), s.empty() ? nullptr : s.data(), bsums.empty() ? nullptr : bsums.data()};
    }
    const void* row_blocks(int t) const {
        const size_t per_row = format == ActFormat::Q8_K ? size_t(cols / 256) * sizeof(BlockQ8_K)
                               : format == ActFormat::Q8_1 ? size_t(cols / 32) * sizeof(BlockQ8_1)
                                                           : size_t(cols / 32) * sizeof(BlockQ8_0);
        return blocks.data() + size_t(t) * per_row;
    }
};

// Random quants in [-127, 127] with random scales: the layouts' every field exercised
// without depending on a quantizer (those are checked on their own).
inline HostAct random_act(ActFormat f, int n, int cols, uint32_t seed) {
    HostAct a;
    a.format = f, a.n = n, a.cols = cols;
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> q(-127, 127);
    std::uniform_real_distribution<float> scale(0.005f, 0.03f);
    a.qs.resize(size_t(n) * cols);
    for (auto& v : a.qs) v = int8_t(q(rng));
    a.values.resize(a.qs.size());
    if (f == ActFormat::Q8_K) {
        const size_t nb = size_t(n) * (cols / 256);
        a.d.resize(nb), a.bsums.resize(nb * 16), a.blocks.resize(nb * sizeof(BlockQ8_K));
        for (size_t b = 0; b < nb; ++b) {
            a.d[b] = scale(rng) / 8;
            BlockQ8_K blk{};
            blk.d = a.d[b];
            std::memcpy(blk.qs, &a.qs[b * 256], 256);
            for (int g = 0; g < 16; ++g) {
                int sum = 0;
                for (int i = 0; i < 16; ++i) sum += a.qs[b * 256 + size_t(g) * 16 + size_t(i)];
                a.bsums[b * 16 + size_t(g)] = int16_t(sum);
                blk.bsums[g] = int16_t(sum);
            }
            std::memcpy(&a.blocks[b * sizeof(BlockQ8_K)], &blk, sizeof blk);
            for (int i = 0; i < 256; ++i) a.values[b * 256 + size_t(i)] = double(a.qs[b * 256 + size_t(i)]) * a.d[b];
        }
        return a;
    }
    const size_t nb = size_t(n) * (cols / 32);
    a.d.resize(nb);
    if (f == ActFormat::Q8_1) a.s.resize(nb), a.blocks.resize(nb * sizeof(BlockQ8_1));
    else a.blocks.resize(nb * sizeof(BlockQ8_0));
    for (size_t b = 0; b < nb; ++b) {
        const uint16_t dh = fp32_to_fp16(scale(rng));
        a.d[b] = fp16_to_fp32(dh);
        int sum = 0;
        for (int i = 0; i < 32; ++i) sum += a.qs[b * 32 + size_t(i)];
        for (int i = 0; i < 32; ++i) a.values[b * 32 + size_t(i)] = double(a.qs[b * 32 + size_t(i)]) * a.d[b];
        if (f == ActFormat::Q8_1) {
            const uint16_t sh = fp32_to_fp16(float(sum) * a.d[b]);
            a.s[b] = fp16_to_fp32(sh);
            BlockQ8_1 blk{};
            blk.d = dh, blk.s = sh;
            std::memcpy(blk.qs, &a.qs[b * 32], 32);
            std::memcpy(&a.blocks[b * sizeof(BlockQ8_1)], &blk, sizeof blk);
        } else {
            BlockQ8_0 blk{};
            blk.d = dh;
            std::memcpy(blk.qs, &a.qs[b * 32], 32);
            std::memcpy(&a.blocks[b * sizeof(BlockQ8_0)], &blk, sizeof blk);
        }
    }
    return a;
}

// The CPU reference of one (row, token) product: ggml's generic vec_dot for the type.
inline float vec_dot_ref(GgmlType t, int cols, const void* w_row, const void* x_row) {
    switch (t) {
    case GgmlType::Q8_0: return vec_dot_q8_0_q8_0_ref(cols, static_cast<const BlockQ8_0*>(w_row), static_cast<const BlockQ8_0*>(x_row));
    case GgmlType::Q4_0: return vec_dot_q4_0_q8_0_ref(cols, static_cast<const BlockQ4_0*>(w_row), static_cast<const BlockQ8_0*>(x_row));
    case GgmlType::Q5_0: return vec_dot_q5_0_q8_0_ref(cols, static_cast<const BlockQ5_0*>(w_row), static_cast<const BlockQ8_0*>(x_row));
    case GgmlType::Q4_1: return vec_dot_q4_1_q8_1_ref(cols, static_cast<const BlockQ4_1*>(w_row), static_cast<const BlockQ8_1*>(x_row));
    case GgmlType::Q5_1: return vec_dot_q5_1_q8_1_ref(cols, static_cast<const BlockQ5_1*>(w_row), static_cast<const BlockQ8_1*>(x_row));
    case GgmlType::Q4_K: return vec_dot_q4_K_q8_K_ref(cols, static_cast<const BlockQ4_K*>(w_row), static_cast<const BlockQ8_K*>(x_row));
    case GgmlType::Q5_K: return vec_dot_q5_K_q8_K_ref(cols, static_cast<const BlockQ5_K*>(w_row), static_cast<const BlockQ8_K*>(x_row));
    case GgmlType::Q6_K: return vec_dot_q6_K_q8_K_ref(cols, static_cast<const BlockQ6_K*>(w_row), static_cast<const BlockQ8_K*>(x_row));
    default: return NAN;
    }
}

// What the device computes for (row, token), emulated: every lane's units in its
// order (units::lane_dot, NT tokens at once), then warp_sum's butterfly (xor 16, 8, 4,
// 2, 1: lane l adds lane l ^ o's value), lane 0's result.
template <WeightType T, int NT>
void emulate_rows(const DevWeight& w, const DevQ8& x, int t0, int n_tok, float* y /* [n_tok][rows] */) {
    for (int r = 0; r < w.rows; ++r) {
        float lanes[32][NT];
        for (int l = 0; l < 32; ++l) cuda::units::lane_dot<T, NT>(w, x, r, t0, n_tok, l, lanes[l]);
        for (int t = 0; t < n_tok; ++t) {
            float v[32];
            for (int l = 0; l < 32; ++l) v[l] = lanes[l][t];
            for (int o = 16; o > 0; o >>= 1) {
                float next[32];
                for (int l = 0; l < 32; ++l) next[l] = v[l] + v[l ^ o];
                std::memcpy(v, next, sizeof v);
            }
            y[size_t(t) * w.rows + size_t(r)] = v[0];
        }
    }
}

template <int NT>
void emulate_rows_any(const DevWeight& w, const DevQ8& x, int t0, int n_tok, float* y) {
    switch (w.type) {
    case WeightType::Q8_0: return emulate_rows<WeightType::Q8_0, NT>(w, x, t0, n_tok, y);
    case WeightType::Q4_0: return emulate_rows<WeightType::Q4_0, NT>(w, x, t0, n_tok, y);
    case WeightType::Q4_1: return emulate_rows<WeightType::Q4_1, NT>(w, x, t0, n_tok, y);
    case WeightType::Q5_0: return emulate_rows<WeightType::Q5_0, NT>(w, x, t0, n_tok, y);
    case WeightType::Q5_1: return emulate_rows<WeightType::Q5_1, NT>(w, x, t0, n_tok, y);
    case WeightType::Q4_K: return emulate_rows<WeightType::Q4_K, NT>(w, x, t0, n_tok, y);
    case WeightType::Q5_K: return emulate_rows<WeightType::Q5_K, NT>(w, x, t0, n_tok, y);
    case WeightType::Q6_K: return emulate_rows<WeightType::Q6_K, NT>(w, x, t0, n_tok, y);
    case WeightType::F32: break;
    }
}

// Y [n][rows] as the device's matvec_q / matmul_q compute it (each token alone: the
// device's result is the same for any tile, which the tests check).
inline std::vector<float> emulate_product(const DevWeight& w, const DevQ8& x, int n) {
    std::vector<float> y(size_t(n) * w.rows);
    for (int t = 0; t < n; ++t) emulate_rows_any<1>(w, x, t, 1, &y[size_t(t) * w.rows]);
    return y;
}

}  // namespace reprise::engine::test
