#include "engine/kernels/rmsnorm.hpp"

#include <cmath>

namespace reprise::engine {
void rmsnorm_f32(float* y, const float* x, const float* w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
    const float scale = 1.0f / std::sqrt(float(ss / n) + eps);
    for (int i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
}
}  // namespace reprise::engine
