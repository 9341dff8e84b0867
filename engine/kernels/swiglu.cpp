#include "engine/kernels/swiglu.hpp"

#include <cmath>

namespace reprise::engine {
void swiglu_f32(float* out, const float* gate, const float* up, int n) {
    for (int i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}
}  // namespace reprise::engine
