#pragma once
// Runtime choice between the AVX2/FMA kernels and the scalar references. The SIMD
// code is compiled with __attribute__((target("avx2,fma"))) rather than -mavx2 for the
// whole build, so the binary still runs (on the scalar path) on a CPU without AVX2.
namespace reprise::engine {
bool cpu_has_avx2();             // x86-64 with AVX2, FMA and F16C (cached cpuid check)
bool kernels_use_simd();         // cpu_has_avx2() and not forced off
void kernels_force_scalar(bool on);  // tests: run the scalar reference path everywhere
}
