#include "engine/engine_info.hpp"

namespace reprise::engine {

std::string_view device_name() { return "none"; }

}  // namespace reprise::engine
