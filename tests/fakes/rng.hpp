#pragma once
// SplitMix64: the tiny, fast generator behind each sampled choice and embedding. One
// draw from the global RNG (or a hash of a seeded request) starts one of these.
#include <cstddef>
#include <cstdint>

namespace reprise::fake {

struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1p-53; }  // [0, 1)
  bool chance(double p) { return uniform() < p; }
  size_t below(size_t n) { return n ? size_t(next() % n) : 0; }
  int between(int lo, int hi) { return lo + int(below(size_t(hi - lo + 1))); }  // inclusive
};

}  // namespace reprise::fake
