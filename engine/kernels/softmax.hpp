#pragma once
// In-place numerically stable softmax (max subtracted before exp).
namespace reprise::engine {
void softmax_f32(float* x, int n);
}
