#pragma once
// Device helpers shared by the kernels: warp reductions, fp16 bits, launch sizes.
#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>

namespace reprise::engine::cuda {

constexpr int kWarpSize = 32;

// Butterfly sums: every lane ends with the total, and the order of the additions is
// fixed (xor 16, 8, 4, 2, 1) whatever the caller, which keeps results reproducible.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float fp16_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }

inline unsigned grid_for(size_t n, unsigned threads) { return unsigned((n + threads - 1) / threads); }

}  // namespace reprise::engine::cuda
