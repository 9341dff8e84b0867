#include "proxy/framing.hpp"

#include <algorithm>
#include <cctype>

namespace reprise {
namespace {

std::string trimmed_lower(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

}  // namespace

std::optional<std::string> check_request_framing(const http::request_header<>& header) {
  size_t te_count = header.count(http::field::transfer_encoding);
  size_t cl_count = header.count(http::field::content_length);
  if (cl_count > 1) return "duplicate Content-Length";
  if (te_count > 1) return "more than one Transfer-Encoding field";
  if (te_count == 1) {
    if (cl_count == 1) return "Transfer-Encoding together with Content-Length";
    if (trimmed_lower(header[http::field::transfer_encoding]) != "chunked")
      return "unsupported Transfer-Encoding (only \"chunked\" is accepted)";
  }
  return std::nullopt;
}

size_t header_end(std::string_view bytes) {
  const size_t at = bytes.find("\r\n\r\n");
  return at == std::string_view::npos ? at : at + 4;
}

std::optional<std::string> check_obs_fold(std::string_view head) {
  // A line break followed by a space or a tab continues the previous field. The
  // blank line that ends the header is followed by the body, so it is left out.
  const size_t end = header_end(head);
  if (end != std::string_view::npos) head = head.substr(0, end - 2);
  for (size_t at = head.find("\r\n"); at != std::string_view::npos; at = head.find("\r\n", at + 2))
    if (at + 2 < head.size() && (head[at + 2] == ' ' || head[at + 2] == '\t'))
      return "a header field folded over two lines (obs-fold) is not accepted";
  return std::nullopt;
}

}  // namespace reprise
