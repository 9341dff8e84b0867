#pragma once
// Request-smuggling defence. A proxy that frames a request differently from the
// next hop lets an attacker hide a second request inside the first, so anything
// ambiguous is refused (400 and close) before the body is read:
//   - Transfer-Encoding other than exactly "chunked" (Boost 1.81's parser accepts
//     "gzip" or "gzip, chunked" and would then frame the body on its own terms);
//   - more than one Transfer-Encoding field;
//   - Transfer-Encoding together with Content-Length;
//   - more than one Content-Length field (even with equal values);
//   - a header continued over two lines (obs-fold, RFC 9112 section 5.2): Beast
//     unfolds it, so "Transfer-Encoding:\r\n chunked" would frame a body that a
//     next hop reading the fold differently would not. Checked on the raw bytes.
#include <optional>
#include <string>

#include "proxy/net.hpp"

namespace reprise {

// The reason the request's framing is refused, or nullopt when it is unambiguous.
std::optional<std::string> check_request_framing(const http::request_header<>& header);

// Where the raw request `head` (the bytes up to and including the blank line that
// ends the header) continues a field over a second line: the reason to refuse it,
// or nullopt. `head` may hold less than a whole header (then only that is checked).
std::optional<std::string> check_obs_fold(std::string_view head);

// The end of the header in `bytes` (the offset just past "\r\n\r\n"), or npos.
size_t header_end(std::string_view bytes);

}  // namespace reprise
