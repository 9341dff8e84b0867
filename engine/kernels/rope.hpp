#pragma once
// Rotary position embedding, GGUF/llama.cpp "normal" (non-NeoX) convention for the
// llama architecture: within each head, the adjacent pairs (x[2j], x[2j+1]) for
// 2j < n_rot are rotated by pos * freq_base^(-2j / n_rot). llama2.c rotates the same
// pairs with the same frequencies (its head_size == n_rot), which is why its weights
// need no permutation (HF checkpoints do: they use the half-split NeoX layout).
namespace reprise::engine {
// x holds n_heads heads of head_dim floats each, rotated in place. As ggml_rope_ext
// without YaRN: theta_j = freq_scale * pos * base^(-j/n_rot) / freq_factors[j/2]
// (freq_factors may be null: all 1).
void rope_f32(float* x, int n_heads, int head_dim, int n_rot, int pos, float freq_base, float freq_scale = 1.0f,
              const float* freq_factors = nullptr);
// The NeoX layout (qwen2, qwen3; llama.cpp's LLAMA_ROPE_TYPE_NEOX): within each head the
// pairs are (x[i], x[i + n_rot/2]) for i < n_rot/2, pair i rotated by the same angle as
// rope_f32's pair j = 2i (one cos/sin table serves both layouts). Dimensions from n_rot
// up to head_dim are left as they are, as ggml does.
void rope_neox_f32(float* x, int n_heads, int head_dim, int n_rot, int pos, float freq_base, float freq_scale = 1.0f,
                   const float* freq_factors = nullptr);
// The n_rot/2 (cos, sin) pairs rope_f32 and rope_neox_f32 rotates by at `pos`, interleaved in cs. The
// CUDA path uploads a table of these (engine/cuda/kernels/rope.cu), so both paths
// rotate by bit-identical angles whatever the device's libm.
void rope_cos_sin(float* cs, int n_rot, int pos, float freq_base, float freq_scale = 1.0f,
                  const float* freq_factors = nullptr);
}
