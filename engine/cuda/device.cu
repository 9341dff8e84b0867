#include "engine/cuda/device.hpp"

#include <cstdio>
#include <cstring>

#include "engine/ggml_types.hpp"

namespace reprise::engine {

bool cuda_built() { return true; }

namespace cuda {

Status check(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return Status();
    return Status::error(std::string(what) + ": " + cudaGetErrorString(e));
}

Result<DeviceInfo> probe_device() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();  // not sticky, but leave nothing behind
        // No driver reads as "driver version is insufficient": name both possibilities.
        return Status::error(std::string("no CUDA device or driver (") + cudaGetErrorString(e) + ")");
    }
    if (n == 0) return Status::error("no CUDA device");
    cudaDeviceProp p{};
    if (Status s = check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties"); !s.ok()) return s;
    DeviceInfo info;
    info.name = p.name;
    info.compute_capability = p.major * 10 + p.minor;
    info.memory_bytes = p.totalGlobalMem;
    char bus[64] = {0};
    if (cudaDeviceGetPCIBusId(bus, sizeof bus, 0) == cudaSuccess) info.pci_bus_id = bus;
    if (info.compute_capability < 90) {
        char msg[256];
        std::snprintf(msg, sizeof msg,
                      "CUDA device 0 (%s) has compute capability %d.%d; this build has code for 9.0 (sm_90) and newer "
                      "(configure with -DCMAKE_CUDA_ARCHITECTURES=%d to add it)",
                      p.name, p.major, p.minor, info.compute_capability);
        return Status::error(msg);
    }
    return info;
}

std::unique_ptr<DeviceKvStorage> DeviceKvStorage::create(size_t n_floats, Enqueue enqueue) {
    void* p = nullptr;
    if (cudaMalloc(&p, n_floats * sizeof(float)) != cudaSuccess) {
        (void)cudaGetLastError();  // out of memory is not sticky: report it, go on
        return nullptr;
    }
    return std::unique_ptr<DeviceKvStorage>(new DeviceKvStorage(static_cast<float*>(p), std::move(enqueue)));
}

DeviceKvStorage::~DeviceKvStorage() { cudaFree(data_); }

}  // namespace cuda
}  // namespace reprise::engine
