#include "engine/kernels/cpu.hpp"

#include <atomic>

namespace reprise::engine {
namespace {
std::atomic<bool> g_force_scalar{false};
std::atomic<int> g_max_isa{int(KernelIsa::Avx512Vnni)};
}  // namespace

bool cpu_has_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    return has;
#else
    return false;
#endif
}
bool cpu_has_avx512vnni() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static const bool has = cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    return has;
#else
    return false;
#endif
}
bool kernels_use_simd() { return cpu_has_avx2() && !g_force_scalar.load(std::memory_order_relaxed); }
void kernels_force_scalar(bool on) { g_force_scalar.store(on); }

KernelIsa kernels_isa() {
    if (!kernels_use_simd()) return KernelIsa::Scalar;
    const int cap = g_max_isa.load(std::memory_order_relaxed);
    if (cap >= int(KernelIsa::Avx512Vnni) && cpu_has_avx512vnni()) return KernelIsa::Avx512Vnni;
    return cap >= int(KernelIsa::Avx2) ? KernelIsa::Avx2 : KernelIsa::Scalar;
}
void kernels_set_max_isa(KernelIsa cap) { g_max_isa.store(int(cap)); }
}  // namespace reprise::engine
