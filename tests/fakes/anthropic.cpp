// STUB: the fake's anthropic dialect, to be written (dialects.hpp).
#include "dialects.hpp"

namespace reprise::fake {

Reply anthropic_messages(const json&, const CallContext&) {
  return error_reply(404, "invalid_request_error", "anthropic is not implemented in the fake yet");
}

}  // namespace reprise::fake
