#pragma once
// Q4_K / Q5_K's 12 packed scale bytes -> 8 scales (bytes 0..7 of out) and 8 mins
// (8..15), 6 bits each: ggml's utmp unpacking, the same values as get_scale_min_k4.
// Shared by both types' reference dots and SIMD policies.
#include <cstdint>
#include <cstring>

namespace reprise::engine {
inline void unpack_scales_mins(const uint8_t* packed, uint8_t out[16]) {
    constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    uint32_t u[4];
    std::memcpy(u, packed, 12);
    u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    const uint32_t mins_lo = u[1] & kmask1;
    u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    u[2] = mins_lo;
    u[0] &= kmask1;
    std::memcpy(out, u, 16);
}
}  // namespace reprise::engine
