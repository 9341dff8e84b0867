#pragma once
// One entry point for every quantized weight type: which activation format a type
// multiplies with, quantizing a batch of activations into it (over the pool), and the
// product Y[t * rows + r] = dot(W row r, Xq token t). Each type's kernels (scalar
// reference, SIMD decode and tiled prefill) live in their own file, matmul_<type>.cpp.
//
//   weight           activations  as llama.cpp (ggml type_traits_cpu vec_dot_type)
//   Q8_0 Q4_0 Q5_0   Q8_0
//   Q4_1 Q5_1        Q8_1         (Q8_0 plus s = d * sum(q), for the weights' minimum)
//   Q4_K Q5_K Q6_K   Q8_K         (256-blocks, float scale, sums of 16s)
#include <cstddef>

#include "engine/ggml_types.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {

enum class ActType { F32, Q8_0, Q8_1, Q8_K };

// The activation format of a weight type; F32 for F32 weights and for types the CPU
// kernels do not multiply (the loader converts those to F32 or refuses them).
ActType act_type_for(GgmlType weight);
bool cpu_matmul_supports(GgmlType weight);  // F32 and every quantized type above
const char* act_type_name(ActType t);
size_t act_row_bytes(ActType t, int cols);  // cols: a multiple of the format's block

// X [n_tok][cols] -> out [n_tok][act_row_bytes(t, cols)], tokens spread over the pool.
// Every format's quantizer is ggml's *_ref one (bit for bit), whatever the path.
void quantize_activations(ActType t, const float* X, int n_tok, int cols, void* out, ThreadPool* pool);

// W [rows][cols] of `weight` (ggml blocks, rows contiguous) x Xq in act_type_for(weight).
void matmul_quantized(GgmlType weight, const void* W, int rows, int cols, const void* Xq, int n_tok, float* Y,
                      ThreadPool* pool);

}  // namespace reprise::engine
