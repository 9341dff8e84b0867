#include "engine/nvml_energy.hpp"

#include <dlfcn.h>

#include <type_traits>

namespace reprise::engine {

// NVML's documented C API (nvml.h), the parts used: every call returns an
// nvmlReturn_t (0 = NVML_SUCCESS), and a device is an opaque pointer.
struct NvmlEnergy::Api {
    using Return = int;
    using Device = void*;
    Return (*init)() = nullptr;                                       // nvmlInit_v2
    Return (*shutdown)() = nullptr;                                   // nvmlShutdown
    Return (*by_pci)(const char*, Device*) = nullptr;                 // nvmlDeviceGetHandleByPciBusId_v2
    Return (*by_index)(unsigned, Device*) = nullptr;                  // nvmlDeviceGetHandleByIndex_v2
    Return (*energy)(Device, unsigned long long*) = nullptr;          // nvmlDeviceGetTotalEnergyConsumption (mJ)
    const char* (*error_string)(Return) = nullptr;                    // nvmlErrorString
    bool initialized = false;

    std::string error(const char* call, Return r) const {
        const char* text = error_string ? error_string(r) : nullptr;
        return std::string(call) + ": " + (text ? text : "NVML error " + std::to_string(r));
    }
};

Result<std::unique_ptr<NvmlEnergy>> NvmlEnergy::open(const std::string& pci_bus_id, const char* library) {
    std::unique_ptr<NvmlEnergy> e(new NvmlEnergy());
    e->lib_ = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (!e->lib_) {
        const char* why = dlerror();
        return Status::error(std::string("NVML: cannot load ") + library + " (it comes with the NVIDIA driver): " +
                             (why ? why : "not found"));
    }
    e->api_ = std::make_unique<Api>();
    Api& a = *e->api_;
    std::string missing;
    auto sym = [&](auto& fn, const char* name) {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(e->lib_, name));
        if (!fn) missing += std::string(missing.empty() ? "" : ", ") + name;
    };
    sym(a.init, "nvmlInit_v2");
    sym(a.shutdown, "nvmlShutdown");
    sym(a.by_pci, "nvmlDeviceGetHandleByPciBusId_v2");
    sym(a.by_index, "nvmlDeviceGetHandleByIndex_v2");
    sym(a.energy, "nvmlDeviceGetTotalEnergyConsumption");
    sym(a.error_string, "nvmlErrorString");
    if (!missing.empty()) return Status::error(std::string("NVML: ") + library + " lacks " + missing);
    if (Api::Return r = a.init(); r != 0) return Status::error("NVML: " + a.error("nvmlInit_v2", r));
    a.initialized = true;
    Api::Device device = nullptr;
    if (!pci_bus_id.empty()) {
        if (Api::Return r = a.by_pci(pci_bus_id.c_str(), &device); r != 0)
            return Status::error("NVML: device " + pci_bus_id + ": " + a.error("nvmlDeviceGetHandleByPciBusId_v2", r));
    } else if (Api::Return r = a.by_index(0, &device); r != 0) {
        return Status::error("NVML: device 0: " + a.error("nvmlDeviceGetHandleByIndex_v2", r));
    }
    e->device_ = device;
    // A board without the counter (pre-Volta, some vGPUs) says so on the first read.
    unsigned long long mj = 0;
    if (Api::Return r = a.energy(device, &mj); r != 0)
        return Status::error("NVML: " + a.error("nvmlDeviceGetTotalEnergyConsumption", r));
    return e;
}

NvmlEnergy::~NvmlEnergy() {
    if (api_ && api_->initialized && api_->shutdown) api_->shutdown();
    if (lib_) dlclose(lib_);
}

bool NvmlEnergy::read_mj(uint64_t* mj) {
    unsigned long long v = 0;
    if (!api_ || !device_ || api_->energy(device_, &v) != 0) return false;
    *mj = uint64_t(v);
    return true;
}

}  // namespace reprise::engine
