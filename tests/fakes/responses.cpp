// STUB: the fake's responses dialect, to be written (dialects.hpp).
#include "dialects.hpp"

namespace reprise::fake {

Reply responses_create(const json&, const CallContext&) {
  return error_reply(404, "invalid_request_error", "responses is not implemented in the fake yet");
}

}  // namespace reprise::fake
