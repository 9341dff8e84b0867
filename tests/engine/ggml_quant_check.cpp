// The engine's ggml reference (de)quantizers and reference dots against ggml's own, bit
// for bit, on random rows with edge cases (ties, zero and constant blocks, outliers,
// scales from 2^-20 to 2^20). ggml is node-llama-cpp's prebuilt build (installed by
// `make sdk-deps` into tests/engine/llamacpp/node_modules), loaded with dlopen:
// libggml-base.so exports quantize_row_*_ref and dequantize_row_*, and
// libggml-cpu-sse42.so the ggml_vec_dot_*_generic dots. The SSE4.2 build because it has
// no FMA: a build with FMA (haswell and up) lets the compiler contract the generic dots'
// `sumf += d * sumi + m * s` into fused multiply-adds, which changes their last bits.
//   ggml_quant_check LIB_DIR     exit 0: all equal; 1: a difference; 77: LIB_DIR lacks ggml
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/ggml_types.hpp"
#include "engine/kernels/cpu.hpp"
#include "engine/kernels/matmul_q4_0.hpp"
#include "engine/kernels/matmul_q4_1.hpp"
#include "engine/kernels/matmul_q4_k.hpp"
#include "engine/kernels/matmul_q5_0.hpp"
#include "engine/kernels/matmul_q5_1.hpp"
#include "engine/kernels/matmul_q5_k.hpp"
#include "engine/kernels/matmul_q6_k.hpp"
#include "engine/kernels/matmul_q8_0.hpp"
#include "engine/kernels/quantize_q8_k.hpp"

using namespace reprise::engine;

namespace {
using QuantizeFn = void (*)(const float*, void*, int64_t);
using DequantizeFn = void (*)(const void*, float*, int64_t);
using GgmlDotFn = void (*)(int, float*, size_t, const void*, size_t, const void*, size_t, int);

struct WeightType {
    const char* name;  // ggml's suffix: quantize_row_<name>_ref, dequantize_row_<name>
    GgmlType type;
    GgmlType act;  // the activation type its dot multiplies (ggml's vec_dot_type)
    float (*dot)(int, const void*, const void*);  // the engine's reference dot
};

template <class W, class A, float (*F)(int, const W*, const A*)>
float dot_of(int n, const void* w, const void* a) {
    return F(n, static_cast<const W*>(w), static_cast<const A*>(a));
}

const WeightType kTypes[] = {
    {"q8_0", GgmlType::Q8_0, GgmlType::Q8_0, dot_of<BlockQ8_0, BlockQ8_0, vec_dot_q8_0_q8_0_ref>},
    {"q4_0", GgmlType::Q4_0, GgmlType::Q8_0, dot_of<BlockQ4_0, BlockQ8_0, vec_dot_q4_0_q8_0_ref>},
    {"q4_1", GgmlType::Q4_1, GgmlType::Q8_1, dot_of<BlockQ4_1, BlockQ8_1, vec_dot_q4_1_q8_1_ref>},
    {"q5_0", GgmlType::Q5_0, GgmlType::Q8_0, dot_of<BlockQ5_0, BlockQ8_0, vec_dot_q5_0_q8_0_ref>},
    {"q5_1", GgmlType::Q5_1, GgmlType::Q8_1, dot_of<BlockQ5_1, BlockQ8_1, vec_dot_q5_1_q8_1_ref>},
    {"q4_K", GgmlType::Q4_K, GgmlType::Q8_K, dot_of<BlockQ4_K, BlockQ8_K, vec_dot_q4_K_q8_K_ref>},
    {"q5_K", GgmlType::Q5_K, GgmlType::Q8_K, dot_of<BlockQ5_K, BlockQ8_K, vec_dot_q5_K_q8_K_ref>},
    {"q6_K", GgmlType::Q6_K, GgmlType::Q8_K, dot_of<BlockQ6_K, BlockQ8_K, vec_dot_q6_K_q8_K_ref>},
};

const char* act_name(GgmlType t) { return t == GgmlType::Q8_1 ? "q8_1" : t == GgmlType::Q8_K ? "q8_K" : "q8_0"; }

void quantize_act(GgmlType t, const float* x, void* y, int64_t k) {
    if (t == GgmlType::Q8_K)
        quantize_row_q8_K_ref(x, static_cast<BlockQ8_K*>(y), k);
    else if (t == GgmlType::Q8_1)
        quantize_row_q8_1_ref(x, static_cast<BlockQ8_1*>(y), k);
    else
        quantize_row_q8_0_ref(x, static_cast<BlockQ8_0*>(y), k);
}

size_t row_bytes(GgmlType t, int n) {
    uint64_t b = 0;
    if (!ggml_row_size(uint32_t(t), uint64_t(n), &b) || b == 0) {
        std::printf("FAIL: no row size for type %u\n", unsigned(t));
        std::exit(1);
    }
    return size_t(b);
}

// Row `it` of the test: kind = it % 6 picks the edge case, the scale 2^-20 .. 2^20.
void make_row(std::mt19937& rng, int it, std::vector<float>* x) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const float scale = std::ldexp(1.0f, int(rng() % 41) - 20);
    for (size_t i = 0; i < x->size(); ++i) {
        float v = u(rng);
        switch (it % 6) {
            case 1: v = std::round(v * 8) / 8; break;                 // ties
            case 2: if (i % 32 < 16) v = 0; break;                    // half-zero blocks
            case 3: if ((i / 32) % 3 == 0) v = 0.25f; break;          // constant blocks
            case 4: v = std::fabs(v); break;                          // one sign
            case 5: v = i % 32 == 7 ? -1.0f : v * 0.01f; break;       // an outlier per block
            default: break;
        }
        (*x)[i] = v * scale;
    }
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: ggml_quant_check LIB_DIR\n");
        return 2;
    }
    const std::string dir = argv[1];
    void* base = dlopen((dir + "/libggml-base.so").c_str(), RTLD_NOW | RTLD_GLOBAL);
    void* cpu = base ? dlopen((dir + "/libggml-cpu-sse42.so").c_str(), RTLD_NOW | RTLD_GLOBAL) : nullptr;
    if (!base || !cpu) {
        std::printf("skipped: ggml not found in %s (%s); run `make sdk-deps`\n", dir.c_str(), dlerror());
        return 77;
    }
    auto sym = [&](void* lib, const std::string& name) {
        void* p = dlsym(lib, name.c_str());
        if (!p) {
            std::printf("FAIL: %s has no %s\n", dir.c_str(), name.c_str());
            std::exit(1);
        }
        return p;
    };
    reinterpret_cast<void (*)()>(sym(cpu, "ggml_cpu_init"))();  // fills ggml's fp16 table

    kernels_set_max_isa(KernelIsa::Scalar);  // the engine's references only
    std::mt19937 rng(1);
    const int n = 32 * 64;
    const int kRows = 600;
    long compared = 0, failed = 0;
    auto report = [&](bool same, const char* what, const char* type, int it) {
        ++compared;
        if (!same && failed++ < 20) std::printf("FAIL: %s %s differs from ggml's (row %d)\n", what, type, it);
    };
    std::vector<float> x(static_cast<size_t>(n)), y(static_cast<size_t>(n)), ours_f(static_cast<size_t>(n)), ggml_f(static_cast<size_t>(n));
    for (const WeightType& t : kTypes) {
        auto g_quant = reinterpret_cast<QuantizeFn>(sym(base, std::string("quantize_row_") + t.name + "_ref"));
        auto g_dequant = reinterpret_cast<DequantizeFn>(sym(base, std::string("dequantize_row_") + t.name));
        auto g_quant_act = reinterpret_cast<QuantizeFn>(sym(base, std::string("quantize_row_") + act_name(t.act) + "_ref"));
        auto g_dot = reinterpret_cast<GgmlDotFn>(sym(cpu, std::string("ggml_vec_dot_") + t.name + "_" + act_name(t.act) + "_generic"));
        std::vector<uint8_t> ours(row_bytes(t.type, n)), theirs(ours.size()), ours_a(row_bytes(t.act, n)), theirs_a(ours_a.size());
        for (int it = 0; it < kRows; ++it) {
            make_row(rng, it, &x);
            make_row(rng, it + 1, &y);
            quantize_row(uint32_t(t.type), x.data(), ours.data(), n);
            g_quant(x.data(), theirs.data(), n);
            report(ours == theirs, "quantize_row", t.name, it);
            quantize_act(t.act, y.data(), ours_a.data(), n);
            g_quant_act(y.data(), theirs_a.data(), n);
            report(ours_a == theirs_a, "quantize_row", act_name(t.act), it);
            if (t.act == GgmlType::Q8_K) {  // the SIMD quantizer the engine runs (kernels/quantize_q8_k)
                std::vector<uint8_t> simd_a(ours_a.size());
                kernels_set_max_isa(KernelIsa::Avx512Vnni);
                quantize_row_q8_K(y.data(), reinterpret_cast<BlockQ8_K*>(simd_a.data()), n);
                kernels_set_max_isa(KernelIsa::Scalar);
                report(simd_a == theirs_a, "quantize_row (SIMD)", act_name(t.act), it);
            }
            dequantize_row(uint32_t(t.type), theirs.data(), ours_f.data(), n);
            g_dequant(theirs.data(), ggml_f.data(), n);
            report(std::memcmp(ours_f.data(), ggml_f.data(), ours_f.size() * sizeof(float)) == 0, "dequantize_row", t.name, it);
            const bool k_quant = ggml_type_traits(uint32_t(t.type)).block_size == 256;
            for (int k : k_quant ? std::vector<int>{256, 768, n} : std::vector<int>{32, 96, 896, n}) {
                float theirs_dot = 0;
                g_dot(k, &theirs_dot, 0, theirs.data(), 0, theirs_a.data(), 0, 1);
                const float ours_dot = t.dot(k, theirs.data(), theirs_a.data());
                report(std::memcmp(&ours_dot, &theirs_dot, sizeof(float)) == 0, "vec_dot", t.name, it);
            }
        }
    }
    std::printf("%ld comparisons with ggml (%s), %ld differ\n", compared, dir.c_str(), failed);
    return failed ? 1 : 0;
}
