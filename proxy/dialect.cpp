#include "proxy/dialect.hpp"

#include <array>
#include <chrono>
#include <random>

#include "proxy/dialects/dialects.hpp"

namespace reprise {
namespace {

using nlohmann::json;

// Made on first use, never destroyed (a Dialect is stateless; threads of a stopping
// process may still render).
const std::array<const Dialect*, std::size(cache::kEndpoints)>& table() {
  static const auto* dialects = [] {
    auto* out = new std::array<const Dialect*, std::size(cache::kEndpoints)>{};
    for (cache::Endpoint e : cache::kEndpoints) {
      std::unique_ptr<Dialect> made;
      switch (e) {
        case cache::Endpoint::chat_completions:
        case cache::Endpoint::completions:
        case cache::Endpoint::embeddings: made = dialects::make_openai(e); break;
        case cache::Endpoint::responses: made = dialects::make_responses(); break;
        case cache::Endpoint::messages: made = dialects::make_anthropic(); break;
        case cache::Endpoint::gemini: made = dialects::make_gemini(); break;
      }
      (*out)[static_cast<size_t>(e)] = made.release();
    }
    return out;
  }();
  return *dialects;
}

}  // namespace

const Dialect& dialect_of(cache::Endpoint endpoint) { return *table()[static_cast<size_t>(endpoint)]; }

void register_dialects(const std::vector<std::string>& openai_ignore, const std::vector<std::string>& anthropic_ignore,
                       const std::vector<std::string>& gemini_ignore) {
  for (cache::Endpoint e : cache::kEndpoints) {
    if (e == cache::Endpoint::chat_completions || e == cache::Endpoint::completions ||
        e == cache::Endpoint::embeddings)
      continue;  // built into cache::canonicalize
    const Dialect* dialect = &dialect_of(e);
    const std::string_view kind = dialect->upstream_kind();
    std::vector<std::string> ignore = kind == "anthropic" ? anthropic_ignore
                                      : kind == "gemini"  ? gemini_ignore
                                                          : openai_ignore;
    cache::register_canonicalizer(e, [dialect, ignore = std::move(ignore)](std::string_view raw, std::string_view context) {
      return dialect->canonicalize(raw, context, ignore);
    });
  }
}

namespace dialect_util {

void erase_path(json& body, std::string_view path) {
  json* at = &body;
  while (!path.empty()) {
    const size_t dot = path.find('.');
    const std::string_view part = path.substr(0, dot);
    const bool last = dot == std::string_view::npos;
    path = last ? std::string_view{} : path.substr(dot + 1);
    if (at->is_object()) {
      auto it = at->find(std::string(part));
      if (it == at->end()) return;
      if (last) {
        at->erase(it);
        return;
      }
      at = &*it;
    } else if (at->is_array()) {
      size_t index = 0;
      if (part.empty() || part.size() > 9) return;
      for (char c : part) {
        if (c < '0' || c > '9') return;
        index = index * 10 + size_t(c - '0');
      }
      if (index >= at->size()) return;
      if (last) {
        (*at)[index] = nullptr;  // later indices keep their meaning
        return;
      }
      at = &(*at)[index];
    } else {
      return;
    }
  }
}

std::string new_id(std::string_view prefix) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string out(prefix);
  for (int i = 0; i < 24; ++i) out += kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
  return out;
}

void append_sse(std::string& out, std::string_view name, const json& data) {
  if (!name.empty()) {
    out += "event: ";
    out += name;
    out += '\n';
  }
  out += "data: ";
  out += data.dump(-1, ' ', false, json::error_handler_t::replace);
  out += "\n\n";
}

const json& field(const json& object, const char* name) {
  static const json null;
  if (!object.is_object()) return null;
  auto it = object.find(name);
  return it == object.end() ? null : *it;
}

std::string string_field(const json& object, const char* name) {
  const json& value = field(object, name);
  return value.is_string() ? value.get<std::string>() : std::string();
}

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace dialect_util
}  // namespace reprise
