#include "engine/kernels/attention.hpp"

#include <cmath>

#include "engine/kernels/cpu.hpp"
#include "engine/kernels/matmul_f32.hpp"
#include "engine/kernels/softmax.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace reprise::engine {

namespace {

void attention_head_ref(const float* qh, const KvView& kv, size_t head, int n_kv, int head_dim, float scale, float* oh,
                        float* scratch) {
    const int bs = kv.block_size;
    // Block by block: one table lookup per block, then contiguous rows.
    for (int p0 = 0; p0 < n_kv; p0 += bs) {
        const float* k = kv.base + size_t(kv.blocks[p0 / bs]) * kv.block_stride + kv.k_offset + head;
        const int rows = n_kv - p0 < bs ? n_kv - p0 : bs;
        for (int r = 0; r < rows; ++r) scratch[p0 + r] = dot_f32(qh, k + size_t(r) * kv.row_stride, head_dim) * scale;
    }
    softmax_f32(scratch, n_kv);
    for (int d = 0; d < head_dim; ++d) oh[d] = 0.0f;
    for (int p0 = 0; p0 < n_kv; p0 += bs) {
        const float* v = kv.base + size_t(kv.blocks[p0 / bs]) * kv.block_stride + kv.v_offset + head;
        const int rows = n_kv - p0 < bs ? n_kv - p0 : bs;
        for (int r = 0; r < rows; ++r) {
            const float a = scratch[p0 + r];
            const float* vh = v + size_t(r) * kv.row_stride;
            for (int d = 0; d < head_dim; ++d) oh[d] += a * vh[d];
        }
    }
}

#if defined(__x86_64__)
// head_dim 64 (most Llamas), the same arithmetic as attention_head_ref with dot_f32's
// AVX2 path, bit for bit: each score is dot_f32_avx2's sequence (4 FMA accumulators
// over 32 floats, then the same horizontal sum) with q in registers and no call per
// key; the output is o += a * v as a rounded multiply then a rounded add per element
// (this file is compiled with -ffp-contract=off) with o in registers, not memory.
__attribute__((target("avx2,fma,f16c"))) inline float hsum_dot4(__m256 s0, __m256 s1, __m256 s2, __m256 s3) {
    const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

__attribute__((target("avx2,fma,f16c"))) float dot64(const __m256* q, const float* k) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    for (int i = 0; i < 8; i += 4) {
        s0 = _mm256_fmadd_ps(q[i], _mm256_loadu_ps(k + 8 * i), s0);
        s1 = _mm256_fmadd_ps(q[i + 1], _mm256_loadu_ps(k + 8 * i + 8), s1);
        s2 = _mm256_fmadd_ps(q[i + 2], _mm256_loadu_ps(k + 8 * i + 16), s2);
        s3 = _mm256_fmadd_ps(q[i + 3], _mm256_loadu_ps(k + 8 * i + 24), s3);
    }
    return hsum_dot4(s0, s1, s2, s3);
}

__attribute__((target("avx2,fma,f16c"))) void attention_head64_avx2(const float* qh, const KvView& kv, size_t head, int n_kv,
                                                                     float scale, float* oh, float* scratch) {
    const int bs = kv.block_size;
    __m256 q[8];
    for (int i = 0; i < 8; ++i) q[i] = _mm256_loadu_ps(qh + 8 * i);
    for (int p0 = 0; p0 < n_kv; p0 += bs) {
        const float* k = kv.base + size_t(kv.blocks[p0 / bs]) * kv.block_stride + kv.k_offset + head;
        const int rows = n_kv - p0 < bs ? n_kv - p0 : bs;
        for (int r = 0; r < rows; ++r) scratch[p0 + r] = dot64(q, k + size_t(r) * kv.row_stride) * scale;
    }
    softmax_f32(scratch, n_kv);
    __m256 o[8];
    for (int i = 0; i < 8; ++i) o[i] = _mm256_setzero_ps();
    for (int p0 = 0; p0 < n_kv; p0 += bs) {
        const float* v = kv.base + size_t(kv.blocks[p0 / bs]) * kv.block_stride + kv.v_offset + head;
        const int rows = n_kv - p0 < bs ? n_kv - p0 : bs;
        for (int r = 0; r < rows; ++r) {
            const __m256 a = _mm256_set1_ps(scratch[p0 + r]);
            const float* vh = v + size_t(r) * kv.row_stride;
            for (int i = 0; i < 8; ++i) o[i] = _mm256_add_ps(o[i], _mm256_mul_ps(a, _mm256_loadu_ps(vh + 8 * i)));
        }
    }
    for (int i = 0; i < 8; ++i) _mm256_storeu_ps(oh + 8 * i, o[i]);
}
#endif

}  // namespace

void attention_f32(const float* q, const KvView& kv, int n_kv, int n_head, int n_head_kv, int head_dim, float* out,
                   float* scratch) {
    const int group = n_head / n_head_kv;
    const float scale = 1.0f / std::sqrt(float(head_dim));
    for (int h = 0; h < n_head; ++h) {
        const size_t head = size_t(h / group) * head_dim;
#if defined(__x86_64__)
        if (head_dim == 64 && kernels_use_simd()) {
            attention_head64_avx2(q + h * head_dim, kv, head, n_kv, scale, out + h * head_dim, scratch);
            continue;
        }
#endif
        attention_head_ref(q + h * head_dim, kv, head, n_kv, head_dim, scale, out + h * head_dim, scratch);
    }
}

}  // namespace reprise::engine
