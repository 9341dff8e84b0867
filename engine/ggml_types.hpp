#pragma once
// ggml tensor element types as stored in GGUF files: ids, block layout, and scalar
// reference (de)quantizers. The ids and byte layouts are ggml's, so files interoperate
// with llama.cpp; the quantizers reproduce ggml's *_ref functions bit for bit.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace reprise::engine {

// Numbering follows ggml.h (GGUF stores these numbers). Only some are implemented;
// the others are known by name so errors can say what a file contains.
enum class GgmlType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
};

constexpr int kQK8_0 = 32;
constexpr int kQK4_0 = 32;
constexpr int kQK_K = 256;

// Block layouts, byte for byte ggml's (ggml-common.h); d / m / dmin are fp16 bits.
#pragma pack(push, 1)
struct BlockQ8_0 { uint16_t d; int8_t qs[kQK8_0]; };          // 34 bytes
struct BlockQ4_0 { uint16_t d; uint8_t qs[kQK4_0 / 2]; };     // 18 bytes
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[16]; };           // 20 bytes: x = q * d + m
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };        // 22 bytes: x = (q - 16) * d
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; };     // 24 bytes: x = q * d + m
struct BlockQ8_1 { uint16_t d, s; int8_t qs[32]; };            // 36 bytes: s = d * sum(qs) (activations)
struct BlockQ4_K {                                             // 144 bytes
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[kQK_K / 2];
};
struct BlockQ5_K {                                             // 176 bytes
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[kQK_K / 8];
    uint8_t qs[kQK_K / 2];
};
struct BlockQ6_K {                                             // 210 bytes
    uint8_t ql[kQK_K / 2];
    uint8_t qh[kQK_K / 4];
    int8_t scales[kQK_K / 16];
    uint16_t d;
};
struct BlockQ8_K {                                             // 292 bytes (activations only)
    float d;
    int8_t qs[kQK_K];
    int16_t bsums[kQK_K / 16];  // sums of groups of 16 qs
};
#pragma pack(pop)
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);

struct GgmlTypeTraits {
    const char* name;      // nullptr: an id ggml does not define
    uint32_t block_size;   // elements per block
    uint32_t type_size;    // bytes per block
    bool supported;        // this engine can dequantize it
};

// Traits for a raw type id from a file; name == nullptr for unknown ids.
const GgmlTypeTraits& ggml_type_traits(uint32_t type);
std::string_view ggml_type_name(uint32_t type);  // "type#N" names are not kept; returns "unknown"
bool ggml_type_supported(uint32_t type);

// Bytes of one row of n elements; false when n is not a multiple of the block size,
// the type is unknown, or the size would overflow.
bool ggml_row_size(uint32_t type, uint64_t n, uint64_t* out);

// IEEE half and bfloat16 conversions (round to nearest even, as ggml).
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);

// Scalar reference kernels. k is the element count, a multiple of the block size.
void dequantize_row_f16(const uint16_t* x, float* y, int64_t k);
void dequantize_row_bf16(const uint16_t* x, float* y, int64_t k);
void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t k);
void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t k);
void dequantize_row_q4_K(const BlockQ4_K* x, float* y, int64_t k);
void quantize_row_f16(const float* x, uint16_t* y, int64_t k);
void quantize_row_bf16(const float* x, uint16_t* y, int64_t k);
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t k);
void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t k);

// The older 32-block types llama.cpp falls back to for rows that are not a multiple
// of 256 (engine/ggml_quants_legacy.cpp), and Q8_1, the activations Q4_1/Q5_1 multiply.
void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t k);
void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t k);
void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t k);
void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t k);
void quantize_row_q5_0_ref(const float* x, BlockQ5_0* y, int64_t k);
void quantize_row_q5_1_ref(const float* x, BlockQ5_1* y, int64_t k);
void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t k);

// K-quants (256-element super-blocks, engine/ggml_quants_k.cpp), and Q8_K, the
// activations they multiply.
void dequantize_row_q5_K(const BlockQ5_K* x, float* y, int64_t k);
void dequantize_row_q6_K(const BlockQ6_K* x, float* y, int64_t k);
void quantize_row_q4_K_ref(const float* x, BlockQ4_K* y, int64_t k);
void quantize_row_q5_K_ref(const float* x, BlockQ5_K* y, int64_t k);
void quantize_row_q6_K_ref(const float* x, BlockQ6_K* y, int64_t k);
void quantize_row_q8_K_ref(const float* x, BlockQ8_K* y, int64_t k);

// Dequantizes a row of any supported type (raw bytes in); false if unsupported or
// k is not a multiple of the block size.
bool dequantize_row(uint32_t type, const void* x, float* y, int64_t k);
// Quantizes a row to any type a weight can be stored in (F32, F16, BF16, Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K); false otherwise or if k is not a block multiple.
bool quantize_row(uint32_t type, const float* x, void* y, int64_t k);

}  // namespace reprise::engine
