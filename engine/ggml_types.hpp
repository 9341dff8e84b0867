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

#pragma pack(push, 1)
struct BlockQ8_0 { uint16_t d; int8_t qs[kQK8_0]; };          // 34 bytes
struct BlockQ4_0 { uint16_t d; uint8_t qs[kQK4_0 / 2]; };     // 18 bytes
struct BlockQ4_K {                                             // 144 bytes
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[kQK_K / 2];
};
#pragma pack(pop)
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_K) == 144);

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

// Dequantizes a row of any supported type (raw bytes in); false if unsupported or
// k is not a multiple of the block size.
bool dequantize_row(uint32_t type, const void* x, float* y, int64_t k);

}  // namespace reprise::engine
