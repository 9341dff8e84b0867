// The CUDA entry points in a build without nvcc: the engine runs on the CPU and says
// why when asked for CUDA (device_model.hpp).
#include "engine/device_model.hpp"

namespace reprise::engine {

bool cuda_built() { return false; }

Result<std::unique_ptr<DeviceModel>> cuda_model_open(const Model&) {
    return Status::error("this build has no CUDA backend (nvcc was not found when it was configured)");
}

}  // namespace reprise::engine
