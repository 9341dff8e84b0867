#include "engine/kernels/matmul_quant.hpp"

#include "engine/kernels/matmul_q4_0.hpp"
#include "engine/kernels/matmul_q4_1.hpp"
#include "engine/kernels/matmul_q4_k.hpp"
#include "engine/kernels/matmul_q5_0.hpp"
#include "engine/kernels/matmul_q5_1.hpp"
#include "engine/kernels/matmul_q5_k.hpp"
#include "engine/kernels/matmul_q6_k.hpp"
#include "engine/kernels/matmul_q8_0.hpp"
#include "engine/kernels/quantize_q8_k.hpp"

namespace reprise::engine {

ActType act_type_for(GgmlType w) {
    switch (w) {
        case GgmlType::Q8_0:
        case GgmlType::Q4_0:
        case GgmlType::Q5_0: return ActType::Q8_0;
        case GgmlType::Q4_1:
        case GgmlType::Q5_1: return ActType::Q8_1;
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
        case GgmlType::Q6_K: return ActType::Q8_K;
        default: return ActType::F32;
    }
}

bool cpu_matmul_supports(GgmlType w) { return w == GgmlType::F32 || act_type_for(w) != ActType::F32; }

const char* act_type_name(ActType t) {
    switch (t) {
        case ActType::Q8_0: return "Q8_0";
        case ActType::Q8_1: return "Q8_1";
        case ActType::Q8_K: return "Q8_K";
        default: return "F32";
    }
}

size_t act_row_bytes(ActType t, int cols) {
    switch (t) {
        case ActType::Q8_0: return size_t(cols / kQK8_0) * sizeof(BlockQ8_0);
        case ActType::Q8_1: return size_t(cols / 32) * sizeof(BlockQ8_1);
        case ActType::Q8_K: return size_t(cols / kQK_K) * sizeof(BlockQ8_K);
        default: return size_t(cols) * sizeof(float);
    }
}

void quantize_activations(ActType t, const float* X, int n_tok, int cols, void* out, ThreadPool* pool) {
    const size_t rb = act_row_bytes(t, cols);
    // Per token, over the pool: in a prefill this is ~8% of the work, and on the
    // calling thread alone it kept two threads from scaling.
    parallel_for(pool, n_tok, [&](int64_t t0, int64_t t1) {
        uint8_t* o = static_cast<uint8_t*>(out) + size_t(t0) * rb;
        const float* x = X + size_t(t0) * cols;
        const int n = int(t1 - t0);
        switch (t) {
            case ActType::Q8_0: quantize_activations_q8_0(x, n, cols, reinterpret_cast<BlockQ8_0*>(o)); break;
            case ActType::Q8_1:
                for (int i = 0; i < n; ++i) quantize_row_q8_1(x + size_t(i) * cols, reinterpret_cast<BlockQ8_1*>(o + size_t(i) * rb), cols);
                break;
            case ActType::Q8_K:
                for (int i = 0; i < n; ++i) quantize_row_q8_K(x + size_t(i) * cols, reinterpret_cast<BlockQ8_K*>(o + size_t(i) * rb), cols);
                break;
            default: break;
        }
    });
}

void matmul_quantized(GgmlType w, const void* W, int rows, int cols, const void* Xq, int n_tok, float* Y, ThreadPool* pool) {
    auto q8_0 = static_cast<const BlockQ8_0*>(Xq);
    auto q8_1 = static_cast<const BlockQ8_1*>(Xq);
    auto q8_K = static_cast<const BlockQ8_K*>(Xq);
    switch (w) {
        case GgmlType::Q8_0: return matmul_q8_0(static_cast<const BlockQ8_0*>(W), rows, cols, q8_0, n_tok, Y, pool);
        case GgmlType::Q4_0: return matmul_q4_0(static_cast<const BlockQ4_0*>(W), rows, cols, q8_0, n_tok, Y, pool);
        case GgmlType::Q5_0: return matmul_q5_0(static_cast<const BlockQ5_0*>(W), rows, cols, q8_0, n_tok, Y, pool);
        case GgmlType::Q4_1: return matmul_q4_1(static_cast<const BlockQ4_1*>(W), rows, cols, q8_1, n_tok, Y, pool);
        case GgmlType::Q5_1: return matmul_q5_1(static_cast<const BlockQ5_1*>(W), rows, cols, q8_1, n_tok, Y, pool);
        case GgmlType::Q4_K: return matmul_q4_K(static_cast<const BlockQ4_K*>(W), rows, cols, q8_K, n_tok, Y, pool);
        case GgmlType::Q5_K: return matmul_q5_K(static_cast<const BlockQ5_K*>(W), rows, cols, q8_K, n_tok, Y, pool);
        case GgmlType::Q6_K: return matmul_q6_K(static_cast<const BlockQ6_K*>(W), rows, cols, q8_K, n_tok, Y, pool);
        default: return;
    }
}

}  // namespace reprise::engine
