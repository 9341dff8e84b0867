#!/usr/bin/env bash
# Issue 8's checks on the GPU machine, in one command (run there through the device
# tool, from the repository root; what it writes under $OUT comes back):
#
#   bash bench/gpu/device_check.sh            # tests, memcheck, bench
#   bash bench/gpu/device_check.sh --no-bench # tests and memcheck only
#
# That machine has nvcc, CMake and ninja but none of the proxy's dependencies, so this
# builds the engine alone (-DREPRISE_ENGINE_ONLY=ON). It needs the carried folder
# .gpu-carry/ (`make gpu-carry` here: doctest's header and CMake files, and the Llama 3
# vocabulary for the bench's model); name it in the device tool's `carry`.
set -euo pipefail
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
carry=.gpu-carry
[ -f $carry/doctest/doctest.h ] || { echo "no $carry: run 'make gpu-carry' first and carry it"; exit 2; }
# doctest is header-only: put it where its CMake package says it is (a throwaway machine).
mkdir -p /usr/include/doctest /usr/lib/cmake/doctest
cp $carry/doctest/doctest.h /usr/include/doctest/
cp $carry/doctest/cmake/* /usr/lib/cmake/doctest/

nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,clocks.max.mem --format=csv | tee "$out/device.txt"
nvcc --version | tail -2 | tee -a "$out/device.txt"

cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DREPRISE_ENGINE_ONLY=ON > "$out/configure.txt" 2>&1 ||
  { cat "$out/configure.txt"; exit 1; }
cmake --build build-gpu --target engine_cuda_tests engine_tests engine_gpu_bench nvml_probe 2>&1 | tail -3

status=0
build-gpu/nvml_probe 2>&1 | tee "$out/nvml.txt" || status=1
# Every kernel and model against the CPU path.
build-gpu/engine_cuda_tests 2>&1 | tee "$out/cuda_tests.txt" || status=1
# The CPU engine tests on this machine too: the CUDA build must not change them.
build-gpu/engine_tests -tce="*llama.cpp*" 2>&1 | tail -5 | tee "$out/engine_tests.txt" || status=1
# memcheck over the kernel tests and one whole model (the rest is the same kernels).
compute-sanitizer --tool memcheck --error-exitcode 1 build-gpu/engine_cuda_tests \
  -tc="cuda kernel*,cuda model: greedy*" 2>&1 | tail -20 | tee "$out/memcheck.txt" || status=1
if [ "${1:-}" != "--no-bench" ]; then
  build-gpu/engine_gpu_bench --vocab $carry/ggml-vocab-llama-bpe.gguf --out "$out/gpu_decode.md" 2>&1 |
    tee "$out/bench.txt" || status=1
fi
exit $status
