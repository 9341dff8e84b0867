#include "proxy/routes.hpp"

#include <algorithm>

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

// The query's parameters as (name, whole parameter) in order; empty ones skipped.
struct Param {
  std::string name;  // percent-decoded (undecodable names kept as sent)
  std::string_view text;
};

std::vector<Param> params_of(std::string_view query) {
  std::vector<Param> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view text = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (text.empty()) continue;
    std::string_view raw_name = text.substr(0, text.find('='));
    auto name = percent_decode(raw_name);
    out.push_back({name ? *name : std::string(raw_name), text});
  }
  return out;
}

std::string_view value_of(const Param& param) {
  size_t eq = param.text.find('=');
  return eq == std::string_view::npos ? std::string_view{} : param.text.substr(eq + 1);
}

}  // namespace

bool is_credential_param(std::string_view name) { return name == "key"; }

std::vector<std::string_view> query_values(std::string_view query, std::string_view name) {
  std::vector<std::string_view> out;
  for (auto& param : params_of(query))
    if (param.name == name) out.push_back(value_of(param));
  return out;
}

std::string key_query(std::string_view query) {
  auto params = params_of(query);
  std::erase_if(params, [](const Param& p) { return is_credential_param(p.name); });
  std::stable_sort(params.begin(), params.end(), [](const Param& a, const Param& b) { return a.name < b.name; });
  std::string out;
  for (auto& param : params) {
    if (!out.empty()) out += '&';
    out += param.text;
  }
  return out;
}

std::string redacted_target(std::string_view target) {
  size_t mark = target.find('?');
  if (mark == std::string_view::npos) return std::string(target);
  std::string out(target.substr(0, mark + 1));
  bool first = true;
  for (auto& param : params_of(target.substr(mark + 1))) {
    if (!first) out += '&';
    first = false;
    if (is_credential_param(param.name)) out += std::string(param.text.substr(0, param.text.find('='))) + "=REDACTED";
    else out += param.text;
  }
  return out;
}

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
  // Gemini: /v1beta/models/{model}:generateContent and :streamGenerateContent; the
  // same under /v1, which @google/genai 3 calls by default (the gemini upstream's
  // base_url decides the version actually called).
  const bool gemini_v1 = path.starts_with("/v1/models/") && (path.ends_with(":generateContent") ||
                                                             path.ends_with(":streamGenerateContent"));
  if (path == "/v1beta" || path.starts_with("/v1beta/") || gemini_v1) {
    std::string_view api = path.substr(gemini_v1 ? 3 : 7);
    route.gemini_api = true;
    route.upstream_target = std::string(api) + std::string(query);
    if (!query.empty()) route.query = std::string(query.substr(1));
    route.endpoint = Endpoint::passthrough;
    if (api.starts_with("/models/")) {
      std::string_view rest = api.substr(8);
      size_t colon = rest.rfind(':');
      if (colon != std::string_view::npos && colon > 0) {
        std::string_view method = rest.substr(colon + 1);
        if (method == "generateContent" || method == "streamGenerateContent") {
          auto model = percent_decode(rest.substr(0, colon));
          if (!model || model->empty() || model->find('/') != std::string::npos)
            return Error{ErrorKind::bad_request, "malformed model name in path", "model"};
          route.endpoint = Endpoint::gemini;
          route.model_id = *model;
          route.path_stream = method == "streamGenerateContent";
        }
      }
    }
    return route;
  }
  if (path != "/v1" && !path.starts_with("/v1/")) return route;  // not_found

  std::string_view api = path.substr(3);  // "/chat/completions"
  route.upstream_target = std::string(api) + std::string(query);
  if (!query.empty()) route.query = std::string(query.substr(1));
  if (api == "/responses") route.endpoint = Endpoint::responses;
  else if (api == "/messages") route.endpoint = Endpoint::messages;
  else if (api.starts_with("/responses/") && api.size() > 11 && api.find('/', 11) == std::string_view::npos) {
    auto id = percent_decode(api.substr(11));
    if (!id) return Error{ErrorKind::bad_request, "malformed response id in path", "response_id"};
    route.endpoint = Endpoint::responses_get;
    route.model_id = *id;
  } else if (api == "/chat/completions") route.endpoint = Endpoint::chat_completions;
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
