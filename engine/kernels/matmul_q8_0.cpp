#include "engine/kernels/matmul_q8_0.hpp"

#include "engine/kernels/cpu.hpp"
#include "engine/kernels/qgemm.hpp"
#include "engine/kernels/simd_q8.hpp"

namespace reprise::engine {

void quantize_activations_q8_0(const float* X, int n_tok, int cols, BlockQ8_0* Xq) {
    const int nb = cols / kQK8_0;
    for (int t = 0; t < n_tok; ++t) quantize_row_q8_0_ref(X + int64_t(t) * cols, Xq + int64_t(t) * nb, cols);
}

float vec_dot_q8_0_q8_0_ref(int n, const BlockQ8_0* x, const BlockQ8_0* y) {
    float sum = 0.0f;
    for (int b = 0; b < n / kQK8_0; ++b) {
        int sumi = 0;
        for (int j = 0; j < kQK8_0; ++j) sumi += int(x[b].qs[j]) * int(y[b].qs[j]);
        sum += float(sumi) * (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d));
    }
    return sum;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma,f16c"))) static float vec_dot_q8_0_q8_0_avx2(int n, const BlockQ8_0* x, const BlockQ8_0* y) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / kQK8_0; ++b) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(x[b].d) * _cvtsh_ss(y[b].d));  // F16C: exact, as fp16_to_fp32
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
        const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs));
        acc = _mm256_fmadd_ps(d, simd::mul_sum_i8_pairs_float(qx, qy), acc);
    }
    return simd::hsum_float_8(acc);
}
#endif

float vec_dot_q8_0_q8_0(int n, const BlockQ8_0* x, const BlockQ8_0* y) {
#if defined(__x86_64__)
    if (kernels_isa() != KernelIsa::Scalar) return vec_dot_q8_0_q8_0_avx2(n, x, y);
#endif
    return vec_dot_q8_0_q8_0_ref(n, x, y);
}

void matmul_q8_0(const BlockQ8_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool) {
    // SIMD: register-tiled (kernels/qgemm.cpp), bit-identical to vec_dot_q8_0_q8_0 per (row, token).
    if (qgemm_q8_0(W, rows, cols, Xq, n_tok, Y, pool)) return;
    const int nb = cols / 32;
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            for (int t = 0; t < n_tok; ++t) Y[int64_t(t) * rows + r] = vec_dot_q8_0_q8_0_ref(cols, W + r * nb, Xq + int64_t(t) * nb);
    }, 16);
}

}  // namespace reprise::engine
