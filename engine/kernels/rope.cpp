#include "engine/kernels/rope.hpp"

#include <cmath>
#include <vector>

namespace reprise::engine {

void rope_cos_sin(float* cs, int n_rot, int pos, float freq_base, float freq_scale, const float* freq_factors) {
    for (int j = 0; j < n_rot; j += 2) {
        // Same formula as llama2.c (1 / base^(j / n_rot), in float) so converted
        // checkpoints reproduce run.c's numbers.
        const float freq = 1.0f / std::pow(freq_base, float(j) / float(n_rot));
        float theta = float(pos) * freq;
        if (freq_scale != 1.0f) theta *= freq_scale;
        if (freq_factors) theta /= freq_factors[j / 2];
        cs[j] = std::cos(theta);
        cs[j + 1] = std::sin(theta);
    }
}

namespace {

// The (cos, sin) table of one position, in a per-thread buffer that grows once: RoPE
// runs per token and layer.
const float* cos_sin_table(int n_rot, int pos, float freq_base, float freq_scale, const float* freq_factors) {
    thread_local std::vector<float> table;
    if (table.size() < size_t(n_rot)) table.resize(size_t(n_rot));
    rope_cos_sin(table.data(), n_rot, pos, freq_base, freq_scale, freq_factors);
    return table.data();
}

}  // namespace

void rope_f32(float* x, int n_heads, int head_dim, int n_rot, int pos, float freq_base, float freq_scale,
              const float* freq_factors) {
    const float* cs = cos_sin_table(n_rot, pos, freq_base, freq_scale, freq_factors);
    for (int j = 0; j < n_rot; j += 2) {
        const float c = cs[j], s = cs[j + 1];
        for (int h = 0; h < n_heads; ++h) {
            float* v = x + h * head_dim + j;
            const float a = v[0], b = v[1];
            v[0] = a * c - b * s;
            v[1] = a * s + b * c;
        }
    }
}

void rope_neox_f32(float* x, int n_heads, int head_dim, int n_rot, int pos, float freq_base, float freq_scale,
                   const float* freq_factors) {
    const float* cs = cos_sin_table(n_rot, pos, freq_base, freq_scale, freq_factors);
    const int half = n_rot / 2;
    for (int i = 0; i < half; ++i) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        for (int h = 0; h < n_heads; ++h) {
            float* v = x + h * head_dim;
            const float a = v[i], b = v[i + half];
            v[i] = a * c - b * s;
            v[i + half] = a * s + b * c;
        }
    }
}

}  // namespace reprise::engine
