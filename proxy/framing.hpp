#pragma once
// Request-smuggling defence. A proxy that frames a request differently from the
// next hop lets an attacker hide a second request inside the first, so anything
// ambiguous is refused (400 and close) before the body is read:
//   - Transfer-Encoding other than exactly "chunked" (Boost 1.81's parser accepts
//     "gzip" or "gzip, chunked" and would then frame the body on its own terms);
//   - more than one Transfer-Encoding field;
//   - Transfer-Encoding together with Content-Length;
//   - more than one Content-Length field (even with equal values).
#include <optional>
#include <string>

#include "proxy/net.hpp"

namespace reprise {

// The reason the request's framing is refused, or nullopt when it is unambiguous.
std::optional<std::string> check_request_framing(const http::request_header<>& header);

}  // namespace reprise
