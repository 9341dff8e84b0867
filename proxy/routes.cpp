#include "proxy/routes.hpp"

namespace reprise {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') { out += s[i]; continue; }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// Matches a [...] set at pattern[p] against c; returns the index after ']' or npos
// when the set is unterminated (then '[' is taken literally).
size_t match_set(std::string_view pattern, size_t p, char c, bool& matched) {
  size_t i = p + 1;
  bool negate = i < pattern.size() && (pattern[i] == '!' || pattern[i] == '^');
  if (negate) ++i;
  bool any = false;
  bool first = true;
  for (; i < pattern.size() && (first || pattern[i] != ']'); ++i, first = false) {
    if (i + 2 < pattern.size() && pattern[i + 1] == '-' && pattern[i + 2] != ']') {
      if (c >= pattern[i] && c <= pattern[i + 2]) any = true;
      i += 2;
    } else if (pattern[i] == c) {
      any = true;
    }
  }
  if (i >= pattern.size()) return std::string_view::npos;
  matched = any != negate;
  return i + 1;
}

}  // namespace

bool valid_namespace(std::string_view ns) {
  if (ns.empty() || ns.size() > 128) return false;
  for (char c : ns) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-' || c == ':';
    if (!ok) return false;
  }
  return true;
}

Result<Route> parse_route(std::string_view target) {
  Route route;
  std::string_view path = target.substr(0, target.find('?'));
  std::string_view query = target.substr(path.size());

  if (path.starts_with("/ns/")) {
    std::string_view rest = path.substr(4);
    size_t slash = rest.find('/');
    auto ns = percent_decode(rest.substr(0, slash));
    if (!ns || !valid_namespace(*ns))
      return Error{ErrorKind::bad_request, "invalid namespace in path: use 1-128 characters of [A-Za-z0-9._:-]", "namespace"};
    route.ns = *ns;
    route.ns_from_path = true;
    path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  }
  if (path != "/v1" && !path.starts_with("/v1/")) return route;  // not_found

  std::string_view api = path.substr(3);  // "/chat/completions"
  route.upstream_target = std::string(api) + std::string(query);
  if (api == "/chat/completions") route.endpoint = Endpoint::chat_completions;
  else if (api == "/completions") route.endpoint = Endpoint::completions;
  else if (api == "/embeddings") route.endpoint = Endpoint::embeddings;
  else if (api == "/models") route.endpoint = Endpoint::models_list;
  else if (api.starts_with("/models/") && api.size() > 8) {
    auto id = percent_decode(api.substr(8));
    if (!id) return Error{ErrorKind::bad_request, "malformed model id in path", "model"};
    route.endpoint = Endpoint::model_get;
    route.model_id = *id;
  } else {
    route.endpoint = Endpoint::passthrough;
  }
  return route;
}

bool glob_match(std::string_view pattern, std::string_view text) {
  // Iterative matcher with single-star backtracking: linear for typical patterns,
  // never exponential.
  size_t p = 0, t = 0, star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size()) {
      char pc = pattern[p];
      if (pc == '*') { star_p = p++; star_t = t; continue; }
      if (pc == '?') { ++p; ++t; continue; }
      if (pc == '[') {
        bool matched = false;
        size_t next = match_set(pattern, p, text[t], matched);
        if (next != std::string_view::npos) {
          if (matched) { p = next; ++t; continue; }
        } else if (text[t] == '[') { ++p; ++t; continue; }
      } else if (pc == text[t]) { ++p; ++t; continue; }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p + 1;
    t = ++star_t;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

const ModelRoute* route_model(const std::vector<ModelRoute>& routes, std::string_view model) {
  for (auto& route : routes)
    if (glob_match(route.match, model)) return &route;
  return nullptr;
}

}  // namespace reprise
