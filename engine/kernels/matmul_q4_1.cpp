#include "engine/kernels/matmul_q4_1.hpp"

#include "engine/kernels/cpu.hpp"
#include "engine/kernels/qgemm_legacy.hpp"
#include "engine/kernels/simd_legacy.hpp"

namespace reprise::engine {

// ggml's ggml_vec_dot_q4_1_q8_1_generic: per block (d_x * d_y) * sumi + m_x * s_y, summed
// in one float over the blocks.
float vec_dot_q4_1_q8_1_ref(int n, const BlockQ4_1* x, const BlockQ8_1* y) {
    float sum = 0.0f;
    for (int b = 0; b < n / 32; ++b) {
        int sumi = 0;
        for (int j = 0; j < 16; ++j) {
            const int lo = x[b].qs[j] & 0x0F, hi = x[b].qs[j] >> 4;
            sumi += lo * y[b].qs[j] + hi * y[b].qs[j + 16];
        }
        sum += (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d)) * float(sumi) + fp16_to_fp32(x[b].m) * fp16_to_fp32(y[b].s);
    }
    return sum;
}

#if defined(__x86_64__)
// The same per-block operations as the tiled kernel (qgemm_legacy.cpp), so bit-identical:
// 8 lanes for d_x * d_y * sum(q_x * q_y), one explicit fused-multiply-add chain for the
// m_x * s_y terms (explicit so that the compiler's contraction cannot differ between
// the two), added once at the end.
__attribute__((target("avx2,fma,f16c"))) static float vec_dot_q4_1_q8_1_avx2(int n, const BlockQ4_1* x, const BlockQ8_1* y) {
    __m256 acc = _mm256_setzero_ps();
    __m128 msum = _mm_setzero_ps();
    for (int b = 0; b < n / 32; ++b) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(x[b].d) * _cvtsh_ss(y[b].d));  // F16C: exact, as fp16_to_fp32
        const __m256i qx = simd::bytes_from_nibbles_32(x[b].qs);  // 0..15
        const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(simd::lanes_u8_s8(qx, qy)), acc);
        msum = _mm_fmadd_ss(_mm_set_ss(_cvtsh_ss(x[b].m)), _mm_set_ss(_cvtsh_ss(y[b].s)), msum);
    }
    return simd::hsum_float_8(acc) + _mm_cvtss_f32(msum);
}
#endif

float vec_dot_q4_1_q8_1(int n, const BlockQ4_1* x, const BlockQ8_1* y) {
#if defined(__x86_64__)
    if (kernels_isa() != KernelIsa::Scalar) return vec_dot_q4_1_q8_1_avx2(n, x, y);
#endif
    return vec_dot_q4_1_q8_1_ref(n, x, y);
}

void matmul_q4_1(const BlockQ4_1* W, int rows, int cols, const BlockQ8_1* Xq, int n_tok, float* Y, ThreadPool* pool) {
    // SIMD: register-tiled (kernels/qgemm_legacy.cpp), bit-identical to vec_dot_q4_1_q8_1 per (row, token).
    if (qgemm_q4_1(W, rows, cols, Xq, n_tok, Y, pool)) return;
    const int nb = cols / 32;
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            for (int t = 0; t < n_tok; ++t) Y[int64_t(t) * rows + r] = vec_dot_q4_1_q8_1_ref(cols, W + r * nb, Xq + int64_t(t) * nb);
    }, 16);
}

}  // namespace reprise::engine
