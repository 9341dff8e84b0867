#include "engine/kernels/matmul_q4_1.hpp"

#include "engine/kernels/cpu.hpp"
#include "engine/kernels/qgemm_legacy.hpp"
#include "engine/kernels/simd_legacy.hpp"

namespace reprise::engine {

#if defined(__x86_64__)
// quantize_row_q8_1_ref with 8 lanes, bit for bit: the max of |x| is exact in any order,
// d and 1/d are the same scalar divisions, x * (1/d) the same multiply, and roundf's
// ties away from zero is rebuilt exactly as floor(|v|) + (|v| - floor(|v|) >= 0.5) with
// v's sign (|v| - floor(|v|) is exact: |v| <= 127 + a few ulps), not the ties-to-even
// of _mm256_round_ps that ggml's own AVX2 quantizer uses. The sum of q is integer.
__attribute__((target("avx2,fma,f16c"))) static void quantize_row_q8_1_avx2(const float* x, BlockQ8_1* y, int64_t k) {
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (int64_t i = 0; i < k / 32; ++i) {
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int p = 0; p < 4; ++p) {
            v[p] = _mm256_loadu_ps(x + i * 32 + p * 8);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[p]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float d = _mm_cvtss_f32(m4) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q32[4];
        __m256i sum = _mm256_setzero_si256();
        for (int p = 0; p < 4; ++p) {
            const __m256 s = _mm256_mul_ps(v[p], vid);
            const __m256 a = _mm256_andnot_ps(sign, s);
            const __m256 fl = _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
            const __m256 up = _mm256_and_ps(_mm256_cmp_ps(_mm256_sub_ps(a, fl), half, _CMP_GE_OQ), one);
            const __m256 r = _mm256_or_ps(_mm256_add_ps(fl, up), _mm256_and_ps(sign, s));
            q32[p] = _mm256_cvtps_epi32(r);  // integral already: exact
            sum = _mm256_add_epi32(sum, q32[p]);
        }
        // int32 -> int8 (values within [-127, 127], no saturation), undoing the lane
        // interleave of the two packs.
        const __m256i q16a = _mm256_packs_epi32(q32[0], q32[1]), q16b = _mm256_packs_epi32(q32[2], q32[3]);
        const __m256i q8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(q16a, q16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), q8);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
        y[i].d = fp32_to_fp16(d);
        y[i].s = fp32_to_fp16(float(_mm_cvtsi128_si32(s4)) * d);
    }
}
#endif

void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t k) {
#if defined(__x86_64__)
    if (kernels_isa() != KernelIsa::Scalar) return quantize_row_q8_1_avx2(x, y, k);
#endif
    quantize_row_q8_1_ref(x, y, k);
}

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
