#pragma once
// SwiGLU gate of the Llama FFN: out = silu(gate) * up, silu(x) = x / (1 + e^-x).
namespace reprise::engine {
void swiglu_f32(float* out, const float* gate, const float* up, int n);
}
