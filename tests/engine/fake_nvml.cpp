// A stand-in for libnvidia-ml.so.1 with the few functions engine/nvml_energy.cpp
// loads, so its dlopen/dlsym path, device lookup and error handling run on machines
// without the driver (tests/engine/energy_test.cpp loads it by path). One board, at
// PCI bus id 00000000:19:00.0, whose counter grows by 250 mJ per read. The test reads
// and steers the fake through fake_nvml_state().
#include <cstring>

#include "tests/engine/fake_nvml.hpp"

namespace {

FakeNvmlState state;
int board;  // the one device handle

}  // namespace

extern "C" {

FakeNvmlState* fake_nvml_state() { return &state; }

int nvmlInit_v2() {
    ++state.inits;
    return state.init_result;
}

int nvmlShutdown() {
    ++state.shutdowns;
    return 0;
}

int nvmlDeviceGetHandleByPciBusId_v2(const char* bus_id, void** device) {
    if (std::strcmp(bus_id, "00000000:19:00.0") != 0) return 6;  // NVML_ERROR_NOT_FOUND
    *device = &board;
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned index, void** device) {
    if (index != 0) return 2;  // NVML_ERROR_INVALID_ARGUMENT
    *device = &board;
    return 0;
}

int nvmlDeviceGetTotalEnergyConsumption(void* device, unsigned long long* mj) {
    if (device != &board) return 2;
    if (state.energy_result != 0) return state.energy_result;
    *mj = state.mj;
    state.mj += 250;
    return 0;
}

const char* nvmlErrorString(int result) {
    switch (result) {
        case 2: return "Invalid Argument";
        case 3: return "Not Supported";
        case 6: return "Not Found";
        case 9: return "Driver Not Loaded";
        default: return "Unknown Error";
    }
}

}  // extern "C"
