#include "engine/kernels/matmul_q4_0.hpp"

#include <vector>

#include "engine/kernels/cpu.hpp"
#include "engine/kernels/qgemm_x16.hpp"
#include "engine/kernels/simd_q8.hpp"

namespace reprise::engine {

float vec_dot_q4_0_q8_0_ref(int n, const BlockQ4_0* x, const BlockQ8_0* y) {
    float sum = 0.0f;
    for (int b = 0; b < n / kQK4_0; ++b) {
        int sumi = 0;
        for (int j = 0; j < kQK4_0 / 2; ++j) {
            const int lo = (x[b].qs[j] & 0x0F) - 8, hi = (x[b].qs[j] >> 4) - 8;
            sumi += lo * y[b].qs[j] + hi * y[b].qs[j + kQK4_0 / 2];
        }
        sum += float(sumi) * (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d));
    }
    return sum;
}

#if defined(__x86_64__)
// The reference's order (float(block sum) * (d_x * d_y), added block by block), the
// integer block sum in SIMD; this file is compiled with -ffp-contract=off.
__attribute__((target("avx2,fma,f16c"))) static float vec_dot_q4_0_q8_0_avx2(int n, const BlockQ4_0* x, const BlockQ8_0* y) {
    float sum = 0.0f;
    const __m256i off = _mm256_set1_epi8(8);
    for (int b = 0; b < n / kQK4_0; ++b) {
        const __m256i qx = _mm256_sub_epi8(simd::bytes_from_nibbles_32(x[b].qs), off);
        const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs));
        const int sumi = simd::hsum_i32_8(simd::mul_sum_i8_pairs(qx, qy));
        sum += float(sumi) * (_cvtsh_ss(x[b].d) * _cvtsh_ss(y[b].d));  // F16C: exact, as fp16_to_fp32
    }
    return sum;
}
#endif

float vec_dot_q4_0_q8_0(int n, const BlockQ4_0* x, const BlockQ8_0* y) {
#if defined(__x86_64__)
    if (kernels_isa() != KernelIsa::Scalar) return vec_dot_q4_0_q8_0_avx2(n, x, y);
#endif
    return vec_dot_q4_0_q8_0_ref(n, x, y);
}

void matmul_q4_0(const BlockQ4_0* W, int rows, int cols, const BlockQ8_0* Xq, int n_tok, float* Y, ThreadPool* pool) {
    // Plain rows are repacked here on every call; the model packs its weights once at
    // load (Weight::x16) and calls x16_matmul directly.
    thread_local std::vector<uint8_t> packed;
    packed.resize(x16_bytes(GgmlType::Q4_0, rows, cols));
    x16_pack(GgmlType::Q4_0, W, rows, cols, packed.data());
    x16_matmul(GgmlType::Q4_0, packed.data(), rows, cols, Xq, n_tok, Y, pool);
}

}  // namespace reprise::engine
