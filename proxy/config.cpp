#include "proxy/config.hpp"

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <toml++/toml.h>

namespace reprise {
namespace {

// Reads the fields of one TOML table into a struct, remembering which keys it used
// so that finish() can reject the rest: a typo in proxy.toml must fail loudly, not be
// silently ignored.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string path, std::string_view source,
              std::vector<std::string>& errors)
      : table_(table), path_(std::move(path)), source_(source), errors_(errors) {}

  void read(std::string_view key, std::string& out) {
    if (auto* node = take(key)) {
      if (auto v = node->value_exact<std::string>()) out = *v;
      else type_error(key, *node, "a string");
    }
  }
  void read(std::string_view key, bool& out) {
    if (auto* node = take(key)) {
      if (auto v = node->value_exact<bool>()) out = *v;
      else type_error(key, *node, "a boolean");
    }
  }
  template <class Int>
  void read(std::string_view key, Int& out, int64_t min, int64_t max) {
    if (auto* node = take(key)) {
      auto v = node->value_exact<int64_t>();
      if (!v) return type_error(key, *node, "an integer");
      if (*v < min || *v > max) return range_error(key, *node, std::to_string(min), std::to_string(max));
      out = static_cast<Int>(*v);
    }
  }
  void read(std::string_view key, double& out, double min, double max) {
    if (auto* node = take(key)) {
      std::optional<double> v;
      if (node->is_floating_point()) v = node->value_exact<double>();
      else if (auto i = node->value_exact<int64_t>()) v = static_cast<double>(*i);
      if (!v) return type_error(key, *node, "a number");
      if (*v < min || *v > max) return range_error(key, *node, fmt(min), fmt(max));
      out = *v;
    }
  }
  void read(std::string_view key, Millis& out, int64_t max_ms = 24ll * 3600 * 1000) {
    int64_t ms = out.count();
    read(key, ms, 0, max_ms);
    out = Millis(ms);
  }

  void read(std::string_view key, std::vector<std::string>& out) {
    if (auto* node = take(key)) {
      const toml::array* array = node->as_array();
      if (!array) return type_error(key, *node, "an array of strings");
      out.clear();
      for (auto& item : *array) {
        auto v = item.value_exact<std::string>();
        if (!v) return type_error(key, item, "an array of strings");
        out.push_back(*v);
      }
    }
  }

  // [cache.redis] wait_replicas: "all" (stored as -1) or an integer 0..16.
  void read_wait_replicas(std::string_view key, int& out) {
    if (auto* node = take(key)) {
      if (auto v = node->value_exact<std::string>(); v && *v == "all") out = -1;
      else if (auto i = node->value_exact<int64_t>(); i && *i >= 0 && *i <= 16) out = static_cast<int>(*i);
      else type_error(key, *node, "\"all\" or an integer 0-16");
    }
  }

  // Marks a key as known without reading it (sections read elsewhere).
  void known(std::string_view key) { used_.insert(std::string(key)); }

  // Reports every key that no read() asked for.
  void finish() {
    for (auto&& [key, node] : table_) {
      if (!used_.count(std::string(key.str())))
        errors_.push_back(where(node) + "unknown key '" + qualified(key.str()) + "'");
    }
  }

  std::string where(const toml::node& node) const {
    return std::string(source_) + ":" + std::to_string(node.source().begin.line) + ": ";
  }
  std::string qualified(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  void error_at(std::string_view key, std::string message) {
    const toml::node* node = table_.get(key);
    errors_.push_back((node ? where(*node) : std::string(source_) + ": ") + qualified(key) + ": " +
                      std::move(message));
  }

 private:
  const toml::node* take(std::string_view key) {
    used_.insert(std::string(key));
    return table_.get(key);
  }
  void type_error(std::string_view key, const toml::node& node, std::string_view want) {
    std::ostringstream got;
    got << node.type();
    errors_.push_back(where(node) + qualified(key) + ": expected " + std::string(want) + ", got " +
                      got.str());
  }
  void range_error(std::string_view key, const toml::node& node, const std::string& lo,
                   const std::string& hi) {
    errors_.push_back(where(node) + qualified(key) + ": must be between " + lo + " and " + hi);
  }
  static std::string fmt(double v) {
    std::ostringstream s;
    s << v;
    return s.str();
  }

  const toml::table& table_;
  std::string path_;
  std::string_view source_;
  std::vector<std::string>& errors_;
  std::set<std::string> used_;
};

// The sub-table `name` of `root`, or an empty table when absent. A value of the
// wrong kind (e.g. `server = 1`) is an error.
const toml::table& subtable(const toml::table& root, std::string_view name, std::string_view source,
                            std::vector<std::string>& errors) {
  static const toml::table empty;
  const toml::node* node = root.get(name);
  if (!node) return empty;
  if (auto* t = node->as_table()) return *t;
  errors.push_back(std::string(source) + ":" + std::to_string(node->source().begin.line) + ": " +
                   std::string(name) + ": expected a table");
  return empty;
}

// Arrays of tables ([[upstreams]], [[models]]): calls fn(table, "upstreams[i]").
template <class Fn>
bool for_each_table(const toml::table& root, std::string_view name, std::string_view source,
                    std::vector<std::string>& errors, Fn fn) {
  const toml::node* node = root.get(name);
  if (!node) return false;
  const toml::array* array = node->as_array();
  if (!array || !array->is_array_of_tables()) {
    errors.push_back(std::string(source) + ":" + std::to_string(node->source().begin.line) + ": " +
                     std::string(name) + ": expected [[" + std::string(name) + "]] tables");
    return true;
  }
  for (size_t i = 0; i < array->size(); ++i)
    fn(*array->get(i)->as_table(), std::string(name) + "[" + std::to_string(i) + "]");
  return true;
}

bool parse_base_url(UpstreamConfig& up) {
  std::string_view url = up.base_url;
  if (url.starts_with("https://")) { up.tls = true; url.remove_prefix(8); }
  else if (url.starts_with("http://")) { up.tls = false; url.remove_prefix(7); }
  else return false;
  size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : url.substr(slash);
  while (path.ends_with('/')) path.remove_suffix(1);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return false;
  if (path.find_first_of("?#") != std::string_view::npos) return false;
  up.base_path = std::string(path);
  bool bracketed = authority.starts_with('[');
  size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && (!bracketed || colon > authority.find(']'))) {
    auto hp = parse_host_port(authority);
    if (!hp || hp->port == 0) return false;
    up.host = hp->host;
    up.port = hp->port;
  } else {
    if (bracketed) authority = authority.substr(1, authority.size() - 2);
    up.host = std::string(authority);
    up.port = up.tls ? 443 : 80;
  }
  return !up.host.empty();
}

void read_upstream(const toml::table& t, const std::string& path, std::string_view source,
                   std::vector<std::string>& errors, Config& config) {
  UpstreamConfig up;
  TableReader r(t, path, source, errors);
  r.read("name", up.name);
  r.read("kind", up.kind);
  r.read("base_url", up.base_url);
  r.read("api_key_env", up.api_key_env);
  r.read("ca_file", up.ca_file);
  r.read("connect_timeout_ms", up.connect_timeout);
  r.read("first_byte_timeout_ms", up.first_byte_timeout);
  r.read("read_idle_timeout_ms", up.read_idle_timeout);
  r.read("total_timeout_ms", up.total_timeout);
  r.read("max_retries", up.max_retries, 0, 10);
  r.read("retry_backoff_ms", up.retry_backoff);
  r.read("retry_backoff_max_ms", up.retry_backoff_max);
  r.read("max_retry_after_ms", up.max_retry_after);
  r.read("max_idle_connections", up.max_idle_connections, 0, 100000);
  r.read("max_response_bytes", up.max_response_bytes, 1024, int64_t{1} << 40);
  r.read("max_n", up.max_n, 1, 100000);
  r.finish();
  if (up.kind != "openai" && up.kind != "anthropic" && up.kind != "gemini")
    r.error_at("kind", "must be \"openai\", \"anthropic\" or \"gemini\", got \"" + up.kind + "\"");
  if (up.name.empty()) r.error_at("name", "is required");
  else if (up.name == "engine") r.error_at("name", "\"engine\" is reserved for the in-process engine");
  if (!parse_base_url(up))
    r.error_at("base_url", "must be http://host[:port][/path] or https://..., got \"" + up.base_url + "\"");
  if (!up.api_key_env.empty()) {
    if (const char* key = std::getenv(up.api_key_env.c_str())) up.api_key = key;
  }
  config.upstreams.push_back(std::move(up));
}

}  // namespace

std::optional<HostPort> parse_host_port(std::string_view text) {
  HostPort hp;
  std::string_view port;
  if (text.starts_with('[')) {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return std::nullopt;
    hp.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) return std::nullopt;
    hp.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  if (hp.host.empty() || port.empty() || port.size() > 5) return std::nullopt;
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) return std::nullopt;
  hp.port = static_cast<uint16_t>(value);
  return hp;
}

Result<Config> parse_config(std::string_view toml_text, std::string_view source) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << source << ":" << e.source().begin.line << ":" << e.source().begin.column << ": "
        << e.description();
    return Error{ErrorKind::bad_request, msg.str(), {}};
  }

  Config c;
  std::vector<std::string> errors;
  {
    TableReader top(root, "", source, errors);
    // Each section is read (and type-checked) below; here only unknown ones are caught.
    for (auto name : {"server", "admin", "cache", "pipeline", "upstreams", "models", "engine", "energy", "prices", "log"})
      top.known(name);
    top.finish();
  }
  {
    TableReader r(subtable(root, "server", source, errors), "server", source, errors);
    auto& s = c.server;
    r.read("listen", s.listen);
    r.read("threads", s.threads, 0, 1024);
    r.read("max_connections", s.max_connections, 1, 1'000'000);
    r.read("max_header_bytes", s.max_header_bytes, 1024, 1 << 20);
    r.read("max_body_bytes", s.max_body_bytes, 1024, int64_t{1} << 32);
    r.read("header_timeout_ms", s.header_timeout);
    r.read("body_gap_timeout_ms", s.body_gap_timeout);
    r.read("request_timeout_ms", s.request_timeout);
    r.read("idle_timeout_ms", s.idle_timeout);
    r.read("write_timeout_ms", s.write_timeout);
    r.read("drain_timeout_ms", s.drain_timeout);
    r.finish();
    if (!parse_host_port(s.listen)) r.error_at("listen", "must be host:port, got \"" + s.listen + "\"");
  }
  {
    TableReader r(subtable(root, "admin", source, errors), "admin", source, errors);
    r.read("listen", c.admin.listen);
    r.read("token", c.admin.token);
    r.finish();
    if (!parse_host_port(c.admin.listen)) r.error_at("listen", "must be host:port, got \"" + c.admin.listen + "\"");
    if (const char* token = std::getenv("REPRISE_ADMIN_TOKEN"); token && *token) c.admin.token = token;
  }
  {
    TableReader r(subtable(root, "cache", source, errors), "cache", source, errors);
    r.read("path", c.cache.path);
    r.read("greedy_reuse", c.cache.greedy_reuse);
    r.read("share_across_keys", c.cache.share_across_keys);
    r.read("hot_samples_mb", c.cache.hot_samples_mb, 0, 1 << 20);
    r.read("max_new_samples", c.cache.max_new_samples, 1, 1 << 20);
    r.read("canonical_memo_mb", c.cache.canonical_memo_mb, 0, 1 << 20);
    r.read("stats_max_namespaces", c.cache.stats_max_namespaces, 1, 10'000'000);
    r.read("stats_max_models", c.cache.stats_max_models, 1, 10'000'000);
    r.read("store", c.cache.store);
    r.known("key_ignore");
    r.known("redis");
    r.finish();
    if (c.cache.store != "rocksdb" && c.cache.store != "redis-cluster")
      r.error_at("store", "must be \"rocksdb\" or \"redis-cluster\", got \"" + c.cache.store + "\"");
    const toml::table& cache_table = subtable(root, "cache", source, errors);
    TableReader ignore(subtable(cache_table, "key_ignore", source, errors), "cache.key_ignore", source, errors);
    ignore.read("openai", c.cache.key_ignore_openai);
    ignore.read("anthropic", c.cache.key_ignore_anthropic);
    ignore.read("gemini", c.cache.key_ignore_gemini);
    ignore.finish();
    TableReader redis(subtable(cache_table, "redis", source, errors), "cache.redis", source, errors);
    redis.read("nodes", c.cache.redis.nodes);
    redis.read("password_env", c.cache.redis.password_env);
    redis.read("timeout_ms", c.cache.redis.timeout_ms, 10, 600'000);
    redis.read_wait_replicas("wait_replicas", c.cache.redis.wait_replicas);
    redis.read("lease_ms", c.cache.redis.lease_ms, 300, 600'000);
    redis.finish();
    if (c.cache.redis.nodes.empty()) redis.error_at("nodes", "must name at least one seed node");
    for (auto& node : c.cache.redis.nodes)
      if (!parse_host_port(node)) redis.error_at("nodes", "must be host:port, got \"" + node + "\"");
    if (c.cache.path.empty()) r.error_at("path", "must not be empty");
  }
  {
    TableReader r(subtable(root, "pipeline", source, errors), "pipeline", source, errors);
    r.read("batch_window_ms", c.pipeline.batch_window_ms, 0, 10'000);
    r.read("batch_max", c.pipeline.batch_max, 1, 100'000);
    r.finish();
  }
  bool have_upstreams = for_each_table(root, "upstreams", source, errors,
      [&](const toml::table& t, const std::string& path) { read_upstream(t, path, source, errors, c); });
  if (!have_upstreams) {
    UpstreamConfig openai;
    openai.name = "openai";
    openai.base_url = "https://api.openai.com/v1";
    openai.api_key_env = "OPENAI_API_KEY";
    parse_base_url(openai);
    if (const char* key = std::getenv("OPENAI_API_KEY")) openai.api_key = key;
    c.upstreams.push_back(std::move(openai));
  }
  std::set<std::string> names;
  for (auto& up : c.upstreams)
    if (!up.name.empty() && !names.insert(up.name).second)
      errors.push_back(std::string(source) + ": upstreams: duplicate name \"" + up.name + "\"");

  bool have_models = for_each_table(root, "models", source, errors,
      [&](const toml::table& t, const std::string& path) {
        ModelRoute route;
        TableReader r(t, path, source, errors);
        r.read("match", route.match);
        r.read("backend", route.backend);
        r.finish();
        if (route.match.empty()) r.error_at("match", "is required");
        if (route.backend != "engine" && !names.count(route.backend))
          r.error_at("backend", "\"" + route.backend + "\" is neither \"engine\" nor the name of an [[upstreams]] entry");
        c.models.push_back(std::move(route));
      });
  if (!have_models && !c.upstreams.empty()) c.models.push_back({"*", c.upstreams.front().name});
  {
    TableReader r(subtable(root, "engine", source, errors), "engine", source, errors);
    r.read("model", c.engine.model);
    r.read("name", c.engine.name);
    r.read("quantize", c.engine.quantize);
    r.read("context", c.engine.context, 0, 1 << 20);
    r.read("max_queued", c.engine.max_queued, 0, 100'000);
    r.read("threads", c.engine.threads, 0, 1024);
    r.read("device", c.engine.device);
    r.read("kv_block_tokens", c.engine.kv_block_tokens, 1, 4096);
    r.read("kv_cache_mb", c.engine.kv_cache_mb, 1, 1 << 20);
    r.read("max_batch_tokens", c.engine.max_batch_tokens, 1, 65'536);
    r.read("max_sequences", c.engine.max_sequences, 1, 1024);
    r.read("early_exit_layer", c.engine.early_exit_layer, 0, 1024);
    r.read("draft_tokens", c.engine.draft_tokens, 1, 64);
    r.read("early_exit_only", c.engine.early_exit_only);
    if (c.engine.early_exit_only && c.engine.early_exit_layer == 0)
      r.error_at("early_exit_only", "needs early_exit_layer > 0 (the layer whose output is served)");
    if (!c.engine.quantize.empty() && c.engine.quantize != "q8_0" && c.engine.quantize != "q4_0")
      r.error_at("quantize", "must be \"\", \"q8_0\" or \"q4_0\"");
    if (c.engine.device != "auto" && c.engine.device != "cpu" && c.engine.device != "cuda")
      r.error_at("device", "must be \"auto\", \"cpu\" or \"cuda\", got \"" + c.engine.device + "\"");
    r.finish();
    if (c.engine.model.empty())
      for (const auto& route : c.models)
        if (route.backend == "engine")
          errors.push_back(std::string(source) + ": [[models]] routes \"" + route.match +
                           "\" to the engine, but [engine] model is empty");
  }
  {
    TableReader r(subtable(root, "energy", source, errors), "energy", source, errors);
    r.read("grid_intensity_g_per_kwh", c.energy.grid_intensity_g_per_kwh, 0, 10'000);
    r.read("pue", c.energy.pue, 1.0, 10.0);
    r.read("pue_local", c.energy.pue_local, 1.0, 10.0);
    r.read("default_class", c.energy.default_class);
    r.read("csv_path", c.energy.csv_path);
    r.read("csv_max_bytes", c.energy.csv_max_bytes, 4096, int64_t{1} << 40);
    r.known("models");
    r.finish();
    auto is_class = [](const std::string& name) {
      return name == "small" || name == "medium" || name == "large" || name == "frontier";
    };
    if (!is_class(c.energy.default_class))
      r.error_at("default_class", "must be one of small, medium, large, frontier");
    for_each_table(subtable(root, "energy", source, errors), "models", source, errors,
        [&](const toml::table& t, const std::string& path) {
          EnergyModelRule rule;
          TableReader m(t, "energy." + path, source, errors);
          m.read("match", rule.match);
          m.read("class", rule.energy_class);
          m.read("a", rule.a, 0, 1e6);
          m.read("b", rule.b, 0, 1e6);
          m.read("c", rule.c, 0, 1e9);
          m.finish();
          const int given = (rule.a >= 0) + (rule.b >= 0) + (rule.c >= 0);
          if (rule.match.empty()) m.error_at("match", "is required");
          if (!rule.energy_class.empty() && !is_class(rule.energy_class))
            m.error_at("class", "must be one of small, medium, large, frontier");
          if (rule.energy_class.empty() == (given == 0) || (given != 0 && given != 3))
            m.error_at("match", "give either class, or all of a, b and c");
          c.energy.models.push_back(std::move(rule));
        });
  }
  for_each_table(root, "prices", source, errors, [&](const toml::table& t, const std::string& path) {
    PriceConfig price;
    TableReader r(t, path, source, errors);
    r.read("match", price.match);
    r.read("prompt_per_million", price.prompt_per_million, 0, 1e6);
    r.read("completion_per_million", price.completion_per_million, 0, 1e6);
    r.finish();
    if (price.match.empty()) r.error_at("match", "is required");
    c.prices.push_back(std::move(price));
  });
  {
    TableReader r(subtable(root, "log", source, errors), "log", source, errors);
    r.read("level", c.log.level);
    r.read("access_log", c.log.access_log);
    r.finish();
    if (c.log.level != "debug" && c.log.level != "info" && c.log.level != "warn" && c.log.level != "error")
      r.error_at("level", "must be one of debug, info, warn, error");
  }

  if (!errors.empty()) {
    std::string all;
    for (auto& e : errors) all += (all.empty() ? "" : "\n") + e;
    return Error{ErrorKind::bad_request, all, {}};
  }
  return c;
}

Result<Config> load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{ErrorKind::not_found, "cannot read config file " + path, {}};
  std::ostringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path);
}

}  // namespace reprise
