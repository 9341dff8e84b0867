#pragma once
// The device-side layouts of weights and quantized activations, as plain C++ (no CUDA
// headers): the kernels (kernels.hpp), the host repacking (repack.hpp) and the host-side
// emulation of the kernels' arithmetic (kernels/q_units.cuh, tests/engine/
// cuda_units_test.cpp) all read them.
#include <cstddef>
#include <cstdint>

namespace reprise::engine::cuda {

// A weight matrix [rows][cols] on the device, repacked at upload (repack.cpp) so every
// vector load is aligned (ggml's 18-, 20-, 22-, 24-, 34- and 210-byte blocks are not):
//   Q8_0: qs [rows][cols] int8; d [rows][cols/32] fp16 bits
//   Q4_0: qs [rows][cols/2], per 32-block ggml's 16 bytes (byte j: element j in the
//         low nibble, j + 16 in the high one); d as Q8_0
//   Q4_1: qs as Q4_0; d and m [rows][cols/32] fp16 bits (x = q * d + m)
//   Q5_0: qs as Q4_0 (the low 4 bits); qh [rows][cols/32] ggml's 4 qh bytes as one
//         little-endian word (bit j: element j's fifth bit); d as Q8_0 (x = (q - 16) * d)
//   Q5_1: qs, qh as Q5_0; d and m as Q4_1 (x = q * d + m)
//   Q4_K: qs: ggml's 144-byte blocks as they are, [rows][cols/256] (144 = 9 x 16: the
//         16-byte header d, dmin, scales[12] and then qs[128] are all aligned)
//   Q5_K: qs: ggml's 176-byte blocks as they are (header, qh[32], qs[128]: 11 x 16)
//   Q6_K: qs [rows][cols/256] 208-byte blocks ql[128] qh[64] scales[16] (ggml's block
//         without its trailing d); d [rows][cols/256] fp16 bits
//   F32:  f [rows][cols]
enum class WeightType { F32, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K };
constexpr int kQ6KPackedBytes = 208;

struct DevWeight {
    WeightType type = WeightType::F32;
    int rows = 0, cols = 0;
    const int8_t* qs = nullptr;
    const uint32_t* qh = nullptr;
    const uint16_t* d = nullptr;
    const uint16_t* m = nullptr;
    const float* f = nullptr;
};

// Quantized activations, one layout per format the weights multiply (as ggml's
// vec_dot_type, engine/kernels/matmul_quant.hpp):
//   Q8_0 (Q8_0, Q4_0, Q5_0 weights): qs [n][cols] int8; d [n][cols/32] the fp16-rounded
//        scale as float (quantize_row_q8_0_ref)
//   Q8_1 (Q4_1, Q5_1): as Q8_0, plus s [n][cols/32] = fp16(d * sum(qs)) as float
//        (quantize_row_q8_1_ref; its qs and d are Q8_0's)
//   Q8_K (Q4_K, Q5_K, Q6_K): qs [n][cols] int8; d [n][cols/256] float (not rounded);
//        bsums [n][cols/16] the sums of 16 qs (quantize_row_q8_K_ref)
struct DevQ8 {
    int8_t* qs = nullptr;
    float* d = nullptr;
    float* s = nullptr;
    int16_t* bsums = nullptr;
};

enum class ActFormat { Q8_0, Q8_1, Q8_K };
constexpr ActFormat act_format(WeightType t) {
    return t == WeightType::Q4_1 || t == WeightType::Q5_1 ? ActFormat::Q8_1
           : t == WeightType::Q4_K || t == WeightType::Q5_K || t == WeightType::Q6_K ? ActFormat::Q8_K
                                                                                      : ActFormat::Q8_0;
}

}  // namespace reprise::engine::cuda
