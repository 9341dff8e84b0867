#pragma once
// Seeded uniform test vectors shared by the kernel tests: the same seed gives the same
// floats on every platform (integer LCG, exact conversion).
#include <cstdint>
#include <vector>

namespace reprise::engine::test {
struct Lcg {
    uint64_t s;
    float next() {  // uniform [-1, 1)
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return float(int64_t(s >> 40) - (1 << 23)) / float(1 << 23);
    }
};
inline std::vector<float> randv(size_t n, uint64_t seed, float scale = 1.0f) {
    Lcg r{seed};
    std::vector<float> v(n);
    for (auto& x : v) x = scale * r.next();
    return v;
}
}  // namespace reprise::engine::test
