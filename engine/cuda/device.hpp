#pragma once
// Host-side pieces of the CUDA backend shared by its files: turning cudaError_t into
// Status, finding the device, and device memory for KV pools.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <string>

#include "engine/device_model.hpp"
#include "engine/status.hpp"

namespace reprise::engine::cuda {

// Status::error("<what>: <CUDA's message>") on failure.
Status check(cudaError_t e, const char* what);

// CUDA device 0, if there is one this build can run on (sm_90 code + PTX: compute
// capability 9.0 or newer).
Result<DeviceInfo> probe_device();

// A KV pool's floats in device memory. copy() runs on `enqueue`, which the model
// provides so that block copies are ordered with its forward passes on its stream.
class DeviceKvStorage final : public KvStorage {
public:
    using Enqueue = std::function<void(float* dst, const float* src, size_t n)>;
    static std::unique_ptr<DeviceKvStorage> create(size_t n_floats, Enqueue enqueue);
    ~DeviceKvStorage() override;
    float* data() override { return data_; }
    void copy(size_t dst, size_t src, size_t n) override { enqueue_(data_ + dst, data_ + src, n); }
    bool on_host() const override { return false; }

private:
    DeviceKvStorage(float* data, Enqueue enqueue) : data_(data), enqueue_(std::move(enqueue)) {}
    float* data_;
    Enqueue enqueue_;
};

}  // namespace reprise::engine::cuda
