// ggml blocks split into the aligned arrays the CUDA kernels load (formats.hpp): the
// quant bytes of every block back to back, the fp16 scales (and minimums, high bits)
// in arrays of their own. Q4_K and Q5_K blocks are 16-byte multiples with aligned
// fields already, so they go up as they are.
#include "engine/cuda/repack.hpp"

#include <cstring>

namespace reprise::engine::cuda {
namespace {

template <class Block>
const Block* blocks_as(const uint8_t* p, size_t i) {
    return reinterpret_cast<const Block*>(p + i * sizeof(Block));
}

uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

}  // namespace

bool device_weight_type(GgmlType t, WeightType* out) {
    switch (t) {
    case GgmlType::F32: *out = WeightType::F32; return true;
    case GgmlType::Q8_0: *out = WeightType::Q8_0; return true;
    case GgmlType::Q4_0: *out = WeightType::Q4_0; return true;
    case GgmlType::Q4_1: *out = WeightType::Q4_1; return true;
    case GgmlType::Q5_0: *out = WeightType::Q5_0; return true;
    case GgmlType::Q5_1: *out = WeightType::Q5_1; return true;
    case GgmlType::Q4_K: *out = WeightType::Q4_K; return true;
    case GgmlType::Q5_K: *out = WeightType::Q5_K; return true;
    case GgmlType::Q6_K: *out = WeightType::Q6_K; return true;
    default: return false;
    }
}

bool repack_weight(GgmlType t, const uint8_t* blocks, int rows, int cols, RepackedWeight* out) {
    *out = RepackedWeight{};
    WeightType wt;
    if (!device_weight_type(t, &wt) || wt == WeightType::F32 || rows < 0 || cols < 0) return false;
    const bool k_quant = wt == WeightType::Q4_K || wt == WeightType::Q5_K || wt == WeightType::Q6_K;
    const int block = k_quant ? kQK_K : 32;
    if (cols % block != 0) return false;
    const size_t n = size_t(rows) * size_t(cols / block);  // blocks; rows are runs of them
    switch (wt) {
    case WeightType::Q8_0:
        out->qs.resize(n * 32), out->d.resize(n);
        for (size_t i = 0; i < n; ++i) {
            const auto* b = blocks_as<BlockQ8_0>(blocks, i);
            out->d[i] = b->d;
            std::memcpy(&out->qs[i * 32], b->qs, 32);
        }
        return true;
    case WeightType::Q4_0:
        out->qs.resize(n * 16), out->d.resize(n);
        for (size_t i = 0; i < n; ++i) {
            const auto* b = blocks_as<BlockQ4_0>(blocks, i);
            out->d[i] = b->d;
            std::memcpy(&out->qs[i * 16], b->qs, 16);
        }
        return true;
    case WeightType::Q4_1:
        out->qs.resize(n * 16), out->d.resize(n), out->m.resize(n);
        for (size_t i = 0; i < n; ++i) {
            const auto* b = blocks_as<BlockQ4_1>(blocks, i);
            out->d[i] = b->d, out->m[i] = b->m;
            std::memcpy(&out->qs[i * 16], b->qs, 16);
        }
        return true;
    case WeightType::Q5_0:
        out->qs.resize(n * 16), out->qh.resize(n), out->d.resize(n);
        for (size_t i = 0; i < n; ++i) {
            const auto* b = blocks_as<BlockQ5_0>(blocks, i);
            out->d[i] = b->d, out->qh[i] = load_u32(b->qh);
            std::memcpy(&out->qs[i * 16], b->qs, 16);
        }
        return true;
    case WeightType::Q5_1:
        out->qs.resize(n * 16), out->qh.resize(n), out->d.resize(n), out->m.resize(n);
        for (size_t i = 0; i < n; ++i) {
            const auto* b = blocks_as<BlockQ5_1>(blocks, i);
            out->d[i] = b->d, out->m[i] = b->m, out->qh[i] = load_u32(b->qh);
            std::memcpy(&out->qs[i * 16], b->qs, 16);
        }
        return true;
    case WeightType::Q4_K:
        out->qs.assign(blocks, blocks + n * sizeof(BlockQ4_K));
        return true;
    case WeightType::Q5_K:
        out->qs.assign(blocks, blocks + n * sizeof(BlockQ5_K));
        return true;
    case WeightType::Q6_K:
        static_assert(sizeof(BlockQ6_K) == kQ6KPackedBytes + 2);
        out->qs.resize(n * kQ6KPackedBytes), out->d.resize(n);
        for (size_t i = 0; i < n; ++i) {
            const auto* b = blocks_as<BlockQ6_K>(blocks, i);
            std::memcpy(&out->qs[i * kQ6KPackedBytes], b, kQ6KPackedBytes);  // ql, qh, scales
            out->d[i] = b->d;
        }
        return true;
    case WeightType::F32: break;
    }
    return false;
}

size_t device_weight_bytes(GgmlType t, int rows, int cols) {
    const size_t r = size_t(rows), c = size_t(cols), b32 = r * (c / 32), b256 = r * (c / kQK_K);
    switch (t) {
    case GgmlType::Q8_0: return r * c + b32 * 2;
    case GgmlType::Q4_0: return r * c / 2 + b32 * 2;
    case GgmlType::Q4_1: return r * c / 2 + b32 * 4;
    case GgmlType::Q5_0: return r * c / 2 + b32 * 6;
    case GgmlType::Q5_1: return r * c / 2 + b32 * 8;
    case GgmlType::Q4_K: return b256 * sizeof(BlockQ4_K);
    case GgmlType::Q5_K: return b256 * sizeof(BlockQ5_K);
    case GgmlType::Q6_K: return b256 * (kQ6KPackedBytes + 2);
    default: return r * c * sizeof(float);
    }
}

}  // namespace reprise::engine::cuda
