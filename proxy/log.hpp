#pragma once
// A small leveled logger to stderr. One line per event, written with a single
// write() so lines from different threads never interleave. Every line passes
// through redact_secrets(): the proxy never logs an API key, even by accident.
#include <string>
#include <string_view>

namespace reprise::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

// Returns false for an unknown name ("debug", "info", "warn", "error").
bool parse_level(std::string_view name, Level& out);
void set_level(Level level);
bool enabled(Level level);

void write(Level level, std::string_view message);
inline void debug(std::string_view m) { if (enabled(Level::debug)) write(Level::debug, m); }
inline void info(std::string_view m) { if (enabled(Level::info)) write(Level::info, m); }
inline void warn(std::string_view m) { if (enabled(Level::warn)) write(Level::warn, m); }
inline void error(std::string_view m) { if (enabled(Level::error)) write(Level::error, m); }

// Masks anything shaped like a credential: "Bearer <token>" and OpenAI-style keys
// ("sk-..."). Cheap enough for every log line (a linear scan).
std::string redact_secrets(std::string_view text);

}  // namespace reprise::log
