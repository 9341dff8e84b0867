#pragma once
// ggml's weight blocks -> the CUDA kernels' layout (formats.hpp), on the host at upload.
// Plain C++ (no CUDA): the host-side emulation test checks it without a device.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/cuda/formats.hpp"
#include "engine/ggml_types.hpp"

namespace reprise::engine::cuda {

// The kernels' type for a ggml type; false for types with no CUDA kernel (F16, BF16,
// Q2_K, Q3_K, ...: the model converts or refuses those before the upload).
bool device_weight_type(GgmlType t, WeightType* out);

// The parts DevWeight points at, as host arrays (empty where the type has none).
struct RepackedWeight {
    std::vector<uint8_t> qs;
    std::vector<uint32_t> qh;
    std::vector<uint16_t> d, m;
    size_t bytes() const { return qs.size() + qh.size() * 4 + (d.size() + m.size()) * 2; }
};

// `rows` rows of `cols` elements of ggml blocks of a quantized type (rows contiguous,
// cols a multiple of the block size). False for F32 and types without a kernel.
bool repack_weight(GgmlType t, const uint8_t* blocks, int rows, int cols, RepackedWeight* out);

// Device bytes of a [rows][cols] matrix of type t as uploaded (the memory bound the
// model checks before uploading): the repacked size, or 4 bytes an element for F32.
size_t device_weight_bytes(GgmlType t, int rows, int cols);

}  // namespace reprise::engine::cuda
