// K-quants Q4_K, Q5_K, Q6_K (weights) and Q8_K (activations): ggml's scalar reference
// (de)quantizers (ggml-quants.c), bit for bit.
#include "engine/ggml_types.hpp"

namespace reprise::engine {
// PLACEHOLDER (helper h-kquant fills these in).
void dequantize_row_q5_K(const BlockQ5_K*, float* y, int64_t k) { for (int64_t i = 0; i < k; ++i) y[i] = 0; }
void dequantize_row_q6_K(const BlockQ6_K*, float* y, int64_t k) { for (int64_t i = 0; i < k; ++i) y[i] = 0; }
void quantize_row_q4_K_ref(const float*, BlockQ4_K*, int64_t) {}
void quantize_row_q5_K_ref(const float*, BlockQ5_K*, int64_t) {}
void quantize_row_q6_K_ref(const float*, BlockQ6_K*, int64_t) {}
void quantize_row_q8_K_ref(const float*, BlockQ8_K*, int64_t) {}
}  // namespace reprise::engine
