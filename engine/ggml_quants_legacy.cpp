// Q4_1, Q5_0, Q5_1 (weights) and Q8_1 (activations): ggml's scalar reference
// (de)quantizers (ggml-quants.c), bit for bit.
#include "engine/ggml_types.hpp"

namespace reprise::engine {
// PLACEHOLDER (helper h-legacy fills these in).
void dequantize_row_q4_1(const BlockQ4_1*, float* y, int64_t k) { for (int64_t i = 0; i < k; ++i) y[i] = 0; }
void dequantize_row_q5_0(const BlockQ5_0*, float* y, int64_t k) { for (int64_t i = 0; i < k; ++i) y[i] = 0; }
void dequantize_row_q5_1(const BlockQ5_1*, float* y, int64_t k) { for (int64_t i = 0; i < k; ++i) y[i] = 0; }
void quantize_row_q4_1_ref(const float*, BlockQ4_1*, int64_t) {}
void quantize_row_q5_0_ref(const float*, BlockQ5_0*, int64_t) {}
void quantize_row_q5_1_ref(const float*, BlockQ5_1*, int64_t) {}
void quantize_row_q8_1_ref(const float*, BlockQ8_1*, int64_t) {}
}  // namespace reprise::engine
