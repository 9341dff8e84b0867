// STUB: the anthropic dialect, to be written (proxy/dialect.hpp says what each method does).
#include "proxy/dialects/dialects.hpp"

namespace reprise::dialects {
namespace {

using nlohmann::json;

class StubDialect : public Dialect {
 public:
  cache::Endpoint endpoint() const override { return cache::Endpoint::messages; }
  std::string_view upstream_kind() const override { return "anthropic"; }
  bool has_n() const override { return false; }
  Expected<cache::CanonicalRequest, cache::CanonicalError> canonicalize(std::string_view, std::string_view,
                                                                      const std::vector<std::string>&) const override {
    return cache::CanonicalError{"the anthropic dialect is not implemented yet", {}};
  }
  std::string upstream_target(const cache::CanonicalRequest&, bool, std::string_view) const override { return {}; }
  json upstream_body(const cache::CanonicalRequest&, uint32_t, bool) const override { return {}; }
  Expected<std::vector<cache::Sample>, std::string> samples_from_json(const json&, uint32_t, std::string_view) const override {
    return std::string("not implemented");
  }
  std::unique_ptr<StreamReader> stream_reader(cache::Generation&, std::string_view) const override { return nullptr; }
  std::string json_body(const std::vector<const cache::Sample*>&, const RenderOptions&) const override { return "{}"; }
  std::unique_ptr<StreamRenderer> stream_renderer(const RenderOptions&) const override { return nullptr; }
  std::string error_body(unsigned, std::string_view body) const override { return std::string(body); }
  Result<json> engine_chat_body(const cache::CanonicalRequest&) const override {
    return Error{ErrorKind::bad_request, "not implemented", {}};
  }
  cache::Sample from_engine_sample(cache::Sample chat_sample, const cache::CanonicalRequest&) const override {
    return chat_sample;
  }
};

}  // namespace

std::unique_ptr<Dialect> make_anthropic() { return std::make_unique<StubDialect>(); }

}  // namespace reprise::dialects
