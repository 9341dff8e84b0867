#include "engine/kernels/cpu.hpp"

#include <atomic>

namespace reprise::engine {
namespace { std::atomic<bool> g_force_scalar{false}; }

bool cpu_has_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    return has;
#else
    return false;
#endif
}
bool kernels_use_simd() { return cpu_has_avx2() && !g_force_scalar.load(std::memory_order_relaxed); }
void kernels_force_scalar(bool on) { g_force_scalar.store(on); }
}  // namespace reprise::engine
