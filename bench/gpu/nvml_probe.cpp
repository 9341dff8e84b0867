// nvml_probe: does the GPU's total-energy counter work on this machine? (issue 8:
// "probe first"). Loads libnvidia-ml.so.1 at run time (the CUDA toolkit has no NVML
// header or stub here), so the function types below are declared by hand from NVML's
// documented API. Reads nvmlDeviceGetTotalEnergyConsumption (millijoules since the
// driver loaded) and nvmlDeviceGetPowerUsage (milliwatts) around an idle wait, and
// prints what it saw.
//   g++ -O2 -std=c++20 bench/gpu/nvml_probe.cpp -ldl -o nvml_probe && ./nvml_probe
#include <dlfcn.h>

#include <chrono>
#include <cstdio>
#include <thread>

using nvmlReturn_t = int;
using nvmlDevice_t = void*;

int main() {
    void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!lib) { std::printf("dlopen libnvidia-ml.so.1: %s\n", dlerror()); return 1; }
    auto sym = [&](const char* name) { return dlsym(lib, name); };
    auto init = reinterpret_cast<nvmlReturn_t (*)()>(sym("nvmlInit_v2"));
    auto count = reinterpret_cast<nvmlReturn_t (*)(unsigned*)>(sym("nvmlDeviceGetCount_v2"));
    auto handle = reinterpret_cast<nvmlReturn_t (*)(unsigned, nvmlDevice_t*)>(sym("nvmlDeviceGetHandleByIndex_v2"));
    auto name = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned)>(sym("nvmlDeviceGetName"));
    auto energy = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, unsigned long long*)>(sym("nvmlDeviceGetTotalEnergyConsumption"));
    auto power = reinterpret_cast<nvmlReturn_t (*)(nvmlDevice_t, unsigned*)>(sym("nvmlDeviceGetPowerUsage"));
    auto error = reinterpret_cast<const char* (*)(nvmlReturn_t)>(sym("nvmlErrorString"));
    if (!init || !count || !handle || !energy || !error) { std::printf("missing NVML symbols\n"); return 1; }
    if (nvmlReturn_t r = init(); r != 0) { std::printf("nvmlInit_v2: %s\n", error(r)); return 1; }
    unsigned n = 0;
    count(&n);
    std::printf("devices: %u\n", n);
    for (unsigned i = 0; i < n; ++i) {
        nvmlDevice_t d = nullptr;
        if (handle(i, &d) != 0) continue;
        char buf[96] = {};
        if (name) name(d, buf, sizeof buf);
        unsigned long long e0 = 0, e1 = 0;
        unsigned p0 = 0;
        nvmlReturn_t r0 = energy(d, &e0);
        if (power) power(d, &p0);
        const auto t0 = std::chrono::steady_clock::now();
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));
        nvmlReturn_t r1 = energy(d, &e1);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("device %u: %s\n  total energy: %s (%llu mJ) -> %s (%llu mJ) over %.3f s = %.1f W average\n"
                    "  power now: %.1f W\n",
                    i, buf, error(r0), e0, error(r1), e1, s, double(e1 - e0) / 1000.0 / s, p0 / 1000.0);
        // How often does the counter move? Poll it for 200 ms and count distinct values.
        unsigned long long last = e1;
        int changes = 0, polls = 0;
        const auto t1 = std::chrono::steady_clock::now();
        while (std::chrono::steady_clock::now() - t1 < std::chrono::milliseconds(200)) {
            unsigned long long v = 0;
            energy(d, &v);
            ++polls;
            if (v != last) { ++changes; last = v; }
        }
        std::printf("  counter changed %d times in %d polls over 200 ms\n", changes, polls);
    }
    return 0;
}
