#include "engine/kernels/matmul_f32.hpp"

#include "engine/kernels/cpu.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace reprise::engine {

float dot_f32_ref(const float* a, const float* b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma,f16c"))) static float dot_f32_avx2(const float* a, const float* b, int n) {
    // Four independent accumulators hide the FMA latency.
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    float out = _mm_cvtss_f32(r);
    for (; i < n; ++i) out += a[i] * b[i];
    return out;
}
#endif

float dot_f32(const float* a, const float* b, int n) {
#if defined(__x86_64__)
    if (kernels_use_simd()) return dot_f32_avx2(a, b, n);
#endif
    return dot_f32_ref(a, b, n);
}

void matmul_f32(const float* W, int rows, int cols, const float* X, int n_tok, float* Y, ThreadPool* pool) {
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* w = W + r * int64_t(cols);
            for (int t = 0; t < n_tok; ++t) Y[int64_t(t) * rows + r] = dot_f32(w, X + int64_t(t) * cols, cols);
        }
    }, 16);
}

}  // namespace reprise::engine
