#pragma once
// Activations to Q8_K (the format the K-quant weights multiply), bit-identical to
// ggml's quantize_row_q8_K_ref (engine/ggml_quants_k.cpp) on every path: AVX2 when the
// CPU has it (prefill quantizes every token of every matmul input), else the reference.
#include "engine/ggml_types.hpp"

namespace reprise::engine {
void quantize_row_q8_K(const float* x, BlockQ8_K* y, int64_t k);
}
