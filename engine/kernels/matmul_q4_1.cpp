#include "engine/kernels/matmul_q4_1.hpp"

namespace reprise::engine {
// PLACEHOLDER: a helper fills this in.
float vec_dot_q4_1_q8_1_ref(int, const BlockQ4_1*, const BlockQ8_1*) { return 0.0f; }
float vec_dot_q4_1_q8_1(int n, const BlockQ4_1* x, const BlockQ8_1* y) { return vec_dot_q4_1_q8_1_ref(n, x, y); }
void matmul_q4_1(const BlockQ4_1* W, int rows, int cols, const BlockQ8_1* Xq, int n_tok, float* Y, ThreadPool* pool) {
    const int nb = cols / 32;
    (void)nb;
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            for (int t = 0; t < n_tok; ++t) Y[int64_t(t) * rows + r] = 0.0f * (W != nullptr) * (Xq != nullptr);
    }, 16);
}
}  // namespace reprise::engine
