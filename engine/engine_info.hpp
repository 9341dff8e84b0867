#pragma once
// The engine's public surface. Until a model loader lands (issue 6) it only reports
// that no model is loaded, so the proxy can route "engine" backends to a clear error.
#include <string_view>

namespace reprise::engine {

// Which device the engine would run on; "none" while no model is loaded.
std::string_view device_name();

}  // namespace reprise::engine
