#include "engine/kernels/softmax.hpp"

#include <cmath>

namespace reprise::engine {
void softmax_f32(float* x, int n) {
    if (n <= 0) return;
    float mx = x[0];
    for (int i = 1; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - mx);
        sum += x[i];
    }
    const float inv = 1.0f / sum;
    for (int i = 0; i < n; ++i) x[i] *= inv;
}
}  // namespace reprise::engine
