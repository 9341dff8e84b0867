#pragma once
// RMSNorm as Llama uses it: y = x / sqrt(mean(x^2) + eps) * w. The mean is taken in
// double: it is one reduction per row and makes the result independent of n's order.
namespace reprise::engine {
void rmsnorm_f32(float* y, const float* x, const float* w, int n, float eps);
}
