#pragma once
// The seam between the model and an accelerator. A Model loads its weights on the
// host; when it runs on a device, a DeviceModel holds the weights' device copy, the
// KV pool's memory and the forward pass, and Model::forward_batch hands it the
// batch after the host-side checks and KV block preparation. The scheduler, the
// sampler and the paged KV bookkeeping are the same host code for every device.
//
// Only CUDA exists (engine/cuda). Builds without nvcc link engine/cuda/unavailable.cpp,
// which says so, so callers never need an #ifdef.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "engine/kv_cache.hpp"
#include "engine/status.hpp"

namespace reprise::engine {

class Model;
struct BatchItem;

// Where a model runs. Auto: CUDA when a device is present, else the CPU.
enum class Device { Auto, Cpu, Cuda };
std::string_view device_name(Device d);                 // "auto" | "cpu" | "cuda"
bool parse_device(std::string_view s, Device* out);     // the inverse; false on anything else

struct DeviceInfo {
    std::string name;         // "NVIDIA H100 80GB HBM3"
    std::string pci_bus_id;   // "00000000:19:00.0": how NVML finds the same board
    int compute_capability = 0;  // 90 for sm_90
    size_t memory_bytes = 0;
};

class DeviceModel {
public:
    virtual ~DeviceModel() = default;
    virtual const DeviceInfo& info() const = 0;
    // Device memory for a KV pool of n floats; null when the device has too little.
    virtual std::unique_ptr<KvStorage> new_kv_storage(size_t n_floats) = 0;
    // Model::forward_batch's pass, on the device: the items are checked and their
    // sequences prepare()d, all in pools from new_kv_storage. Thread-safe (serialised).
    virtual Status forward(BatchItem* items, int n_items, int layer_end) = 0;
};

// True when this build has the CUDA backend (nvcc was found at configure time).
bool cuda_built();
// Uploads `model`'s weights to CUDA device 0 and returns the device half of the model.
// Errors say why not: built without CUDA, no device or driver, too little memory.
Result<std::unique_ptr<DeviceModel>> cuda_model_open(const Model& model);

}  // namespace reprise::engine
