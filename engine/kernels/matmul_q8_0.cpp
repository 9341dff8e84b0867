#include "engine/kernels/matmul_q8_0.hpp"

#include <cmath>
#include <vector>

#include "engine/kernels/cpu.hpp"
#include "engine/kernels/qgemm_x16.hpp"
#include "engine/kernels/simd_q8.hpp"

namespace reprise::engine {

#if defined(__x86_64__)
// quantize_row_q8_0_ref, bit for bit: the same amax, d and 1/d (scalar), the same float
// products x * id, and roundf's half-away-from-zero done exactly in SIMD: t = trunc(v),
// then t + sign(v) where |v - t| >= 0.5 (v - t is exact for |v| < 2^23).
__attribute__((target("avx2,fma,f16c"))) static void quantize_row_q8_0_avx2(const float* x, BlockQ8_0* y, int64_t k) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (int64_t i = 0; i < k / kQK8_0; ++i) {
        const float* xb = x + i * kQK8_0;
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int j = 0; j < 4; ++j) {
            v[j] = _mm256_loadu_ps(xb + 8 * j);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_mask, v[j]));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float d = _mm_cvtss_f32(m) / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int j = 0; j < 4; ++j) {
            const __m256 s = _mm256_mul_ps(v[j], vid);
            const __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 frac = _mm256_andnot_ps(sign_mask, _mm256_sub_ps(s, t));
            const __m256 step = _mm256_or_ps(_mm256_and_ps(s, sign_mask), one);  // +-1 with v's sign
            const __m256 r = _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), step));
            q[j] = _mm256_cvttps_epi32(r);
        }
        // int32 -> int8 (values in [-127, 127]); packs interleave 128-bit lanes: undo with a permute.
        const __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
        const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        const __m256i out = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), out);
    }
}
#endif

void quantize_activations_q8_0(const float* X, int n_tok, int cols, BlockQ8_0* Xq) {
    const int nb = cols / kQK8_0;
#if defined(__x86_64__)
    if (kernels_isa() != KernelIsa::Scalar) {
        for (int t = 0; t < n_tok; ++t) quantize_row_q8_0_avx2(X + int64_t(t) * cols, Xq + int64_t(t) * nb, cols);
        return;
    }
#endif
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
// The reference's order (float(block sum) * (d_x * d_y), added block by block), the
// integer block sum in SIMD; this file is compiled with -ffp-contract=off.
__attribute__((target("avx2,fma,f16c"))) static float vec_dot_q8_0_q8_0_avx2(int n, const BlockQ8_0* x, const BlockQ8_0* y) {
    float sum = 0.0f;
    for (int b = 0; b < n / kQK8_0; ++b) {
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
        const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs));
        const int sumi = simd::hsum_i32_8(simd::mul_sum_i8_pairs(qx, qy));
        sum += float(sumi) * (_cvtsh_ss(x[b].d) * _cvtsh_ss(y[b].d));  // F16C: exact, as fp16_to_fp32
    }
    return sum;
}
#endif

float vec_dot_q8_0_q8_0(int n, const BlockQ8_0* x, const BlockQ8_0* y) {
#if defined(__x86_64__)
    if (kernels_isa() != KernelIsa::Scalar) return vec_dot_q8_0_q8_0_avx2(n, x, y);
#endif
    return vec_dot_q8_0_q8_0_ref(n, x, y);
}

void matmul_q8_0(const BlockQ8_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool) {
    // Plain rows are repacked here on every call; the model packs its weights once at
    // load (Weight::x16) and calls x16_matmul directly.
    thread_local std::vector<uint8_t> packed;
    packed.resize(x16_bytes(GgmlType::Q8_0, rows, cols));
    x16_pack(GgmlType::Q8_0, W, rows, cols, packed.data());
    x16_matmul(GgmlType::Q8_0, packed.data(), rows, cols, Xq, n_tok, Y, pool);
}

}  // namespace reprise::engine
