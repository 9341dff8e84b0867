#pragma once
// Runtime choice between the SIMD kernels and the scalar references. The SIMD code is
// compiled with __attribute__((target(...))) rather than -mavx2 / -mavx512* for the
// whole build, so the binary still runs (on a narrower path) on any x86-64 CPU.
namespace reprise::engine {
bool cpu_has_avx2();             // x86-64 with AVX2, FMA and F16C (cached cpuid check)
bool cpu_has_avx512vnni();       // and AVX512F/BW/VL + AVX512-VNNI (256-bit vpdpbusd)
bool kernels_use_simd();         // cpu_has_avx2() and not forced off
void kernels_force_scalar(bool on);  // tests: run the scalar reference path everywhere

// Widest kernel path in use: the CPU's best, capped by kernels_set_max_isa (tests
// compare the paths against each other on one machine).
enum class KernelIsa { Scalar = 0, Avx2 = 1, Avx512Vnni = 2 };
KernelIsa kernels_isa();
void kernels_set_max_isa(KernelIsa cap);  // default: Avx512Vnni (no cap)
}
