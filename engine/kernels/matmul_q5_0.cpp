#include "engine/kernels/matmul_q5_0.hpp"

#include <cstring>

#include "engine/kernels/cpu.hpp"
#include "engine/kernels/qgemm_legacy.hpp"
#include "engine/kernels/simd_legacy.hpp"

namespace reprise::engine {

// ggml's ggml_vec_dot_q5_0_q8_0_generic: exact int block sums, one float sum over blocks.
float vec_dot_q5_0_q8_0_ref(int n, const BlockQ5_0* x, const BlockQ8_0* y) {
    float sum = 0.0f;
    for (int b = 0; b < n / 32; ++b) {
        uint32_t qh;
        std::memcpy(&qh, x[b].qh, sizeof qh);
        int sumi = 0;
        for (int j = 0; j < 16; ++j) {
            const int lo = ((x[b].qs[j] & 0x0F) | int((qh >> j) & 1u) << 4) - 16;
            const int hi = ((x[b].qs[j] >> 4) | int((qh >> (j + 16)) & 1u) << 4) - 16;
            sumi += lo * y[b].qs[j] + hi * y[b].qs[j + 16];
        }
        sum += (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d)) * float(sumi);
    }
    return sum;
}

#if defined(__x86_64__)
// The same per-block operations as the tiled kernel (qgemm_legacy.cpp), so bit-identical.
__attribute__((target("avx2,fma,f16c"))) static float vec_dot_q5_0_q8_0_avx2(int n, const BlockQ5_0* x, const BlockQ8_0* y) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i off = _mm256_set1_epi8(16);
    for (int b = 0; b < n / 32; ++b) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(x[b].d) * _cvtsh_ss(y[b].d));  // F16C: exact, as fp16_to_fp32
        const __m256i qx = _mm256_sub_epi8(simd::bytes_from_q5(x[b].qs, x[b].qh), off);  // -16..15
        const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs));
        acc = _mm256_fmadd_ps(d, simd::mul_sum_i8_pairs_float(qx, qy), acc);
    }
    return simd::hsum_float_8(acc);
}
#endif

float vec_dot_q5_0_q8_0(int n, const BlockQ5_0* x, const BlockQ8_0* y) {
#if defined(__x86_64__)
    if (kernels_isa() != KernelIsa::Scalar) return vec_dot_q5_0_q8_0_avx2(n, x, y);
#endif
    return vec_dot_q5_0_q8_0_ref(n, x, y);
}

void matmul_q5_0(const BlockQ5_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool) {
    // SIMD: register-tiled (kernels/qgemm_legacy.cpp), bit-identical to vec_dot_q5_0_q8_0 per (row, token).
    if (qgemm_q5_0(W, rows, cols, Xq, n_tok, Y, pool)) return;
    const int nb = cols / 32;
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            for (int t = 0; t < n_tok; ++t) Y[int64_t(t) * rows + r] = vec_dot_q5_0_q8_0_ref(cols, W + r * nb, Xq + int64_t(t) * nb);
    }, 16);
}

}  // namespace reprise::engine
