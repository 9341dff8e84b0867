#include "engine/kernels/matmul_q6_k.hpp"

namespace reprise::engine {
// PLACEHOLDER: a helper fills this in.
float vec_dot_q6_K_q8_K_ref(int, const BlockQ6_K*, const BlockQ8_K*) { return 0.0f; }
float vec_dot_q6_K_q8_K(int n, const BlockQ6_K* x, const BlockQ8_K* y) { return vec_dot_q6_K_q8_K_ref(n, x, y); }
void matmul_q6_K(const BlockQ6_K* W, int rows, int cols, const BlockQ8_K* Xq, int n_tok, float* Y, ThreadPool* pool) {
    const int nb = cols / 32;
    (void)nb;
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            for (int t = 0; t < n_tok; ++t) Y[int64_t(t) * rows + r] = 0.0f * (W != nullptr) * (Xq != nullptr);
    }, 16);
}
}  // namespace reprise::engine
