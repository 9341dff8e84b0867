#include "engine/device_model.hpp"

namespace reprise::engine {

std::string_view device_name(Device d) {
    switch (d) {
        case Device::Cpu: return "cpu";
        case Device::Cuda: return "cuda";
        default: return "auto";
    }
}

bool parse_device(std::string_view s, Device* out) {
    for (Device d : {Device::Auto, Device::Cpu, Device::Cuda})
        if (s == device_name(d)) {
            *out = d;
            return true;
        }
    return false;
}

}  // namespace reprise::engine
