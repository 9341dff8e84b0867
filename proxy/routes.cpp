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

const ModelRoute* route_model(const std::vector<ModelRoute>& routes, std::string_view model) {
  for (auto& route : routes)
    if (glob_match(route.match, model)) return &route;
  return nullptr;
}

}  // namespace reprise
