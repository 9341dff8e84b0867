#pragma once
// The GPU's energy counter, read through NVML (DESIGN.md section 5: the energy the
// engine spends on CUDA is measured). nvmlDeviceGetTotalEnergyConsumption gives the
// millijoules the board has used since the driver loaded; on an H100 it moves about
// every 100 ms (bench/gpu/nvml_probe.cpp), so it is read around windows of steps,
// not single steps (energy_split.hpp).
//
// libnvidia-ml.so.1 comes with the driver, not with the CUDA toolkit (which has no
// NVML header here), so it is loaded with dlopen at run time and the few functions
// used are declared by hand: the engine builds and runs on machines without it, and
// NvmlEnergy::open then says why there is no counter.
#include <cstdint>
#include <memory>
#include <string>

#include "engine/status.hpp"

namespace reprise::engine {

// A cumulative energy counter in millijoules. NvmlEnergy is the real one; tests
// inject their own (EngineOptions::energy_counter).
class EnergyCounter {
public:
    virtual ~EnergyCounter() = default;
    // The counter now; false when it cannot be read (the reading is then skipped).
    virtual bool read_mj(uint64_t* mj) = 0;
};

class NvmlEnergy final : public EnergyCounter {
public:
    // The board with this PCI bus id ("00000000:19:00.0", as DeviceInfo::pci_bus_id
    // gives it), or device index 0 when the id is empty. Errors (no library, no
    // driver, no such board, a board without the counter) are values, never crashes.
    // `library`: what to dlopen (tests load a fake NVML by its path).
    static Result<std::unique_ptr<NvmlEnergy>> open(const std::string& pci_bus_id,
                                                    const char* library = "libnvidia-ml.so.1");
    ~NvmlEnergy() override;  // nvmlShutdown, then dlclose
    NvmlEnergy(const NvmlEnergy&) = delete;
    NvmlEnergy& operator=(const NvmlEnergy&) = delete;

    bool read_mj(uint64_t* mj) override;

private:
    struct Api;
    NvmlEnergy() = default;
    void* lib_ = nullptr;
    std::unique_ptr<Api> api_;
    void* device_ = nullptr;  // nvmlDevice_t
};

}  // namespace reprise::engine
