// STUB: the fake's gemini dialect, to be written (dialects.hpp).
#include "dialects.hpp"

namespace reprise::fake {

Reply gemini_generate(const json&, std::string_view, bool, const CallContext&) {
  return error_reply(404, "invalid_request_error", "gemini is not implemented in the fake yet");
}

}  // namespace reprise::fake
