#pragma once
// The one configuration struct. Loaded in one place (load_config) from proxy.toml;
// every field's default is the value written here, and proxy.toml documents each.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxy/error.hpp"

namespace reprise {

using Millis = std::chrono::milliseconds;

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

struct ServerConfig {
  std::string listen = "127.0.0.1:8080";
  int threads = 0;                          // 0 = one per core
  int max_connections = 4096;               // beyond this, new connections get a 503
  uint64_t max_header_bytes = 16 * 1024;    // 431 beyond
  uint64_t max_body_bytes = 8 * 1024 * 1024;  // 413 beyond
  Millis header_timeout{10'000};            // first byte to end of headers
  Millis body_gap_timeout{10'000};          // longest silence while a body arrives
  Millis request_timeout{60'000};           // whole request read, headers and body
  Millis idle_timeout{60'000};              // keep-alive wait for the next request
  Millis write_timeout{30'000};             // each write to a client
  Millis drain_timeout{10'000};             // SIGTERM: time left to in-flight requests
};

struct AdminConfig {
  std::string listen = "127.0.0.1:9090";
  std::string token;  // REPRISE_ADMIN_TOKEN overrides
};

struct CacheConfig {
  std::string path = "data/cache";
  bool greedy_reuse = true;
  bool share_across_keys = false;
  int hot_samples_mb = 64;  // decoded samples kept in memory for hits; 0 = off
  int max_new_samples = 128;  // most samples one X-Reprise-Sample request may have generated
  int canonical_memo_mb = 64;  // canonical forms of recent request bodies (heap bytes); 0 = off
  // Counters kept apart per namespace and per model (names over 256 bytes too) in
  // /admin/stats, /metrics and the saved stats; beyond, folded into "_other".
  int stats_max_namespaces = 10'000;
  int stats_max_models = 10'000;
  // [cache.key_ignore]: dotted body paths left out of the key per dialect family (the
  // upstream kind that speaks it), still forwarded upstream. Empty by default.
  std::vector<std::string> key_ignore_openai;     // Responses requests
  std::vector<std::string> key_ignore_anthropic;  // Messages requests
  std::vector<std::string> key_ignore_gemini;     // generateContent requests
  // Where the lists and cursors live (DESIGN.md section 10): "rocksdb" (one machine,
  // at `path`) or "redis-cluster" (shared by many replicas; `path` then holds this
  // replica's local copy of the samples it has read).
  std::string store = "rocksdb";
  struct Redis {  // [cache.redis], only with store = "redis-cluster"
    std::vector<std::string> nodes = {"127.0.0.1:7000"};  // seeds; the rest are discovered
    std::string password_env;  // AUTH password from this environment variable; "" = none
    int timeout_ms = 2000;     // one command's deadline, retries and WAIT included
    int wait_replicas = -1;    // "all" (-1): every online replica of the shard; or N >= 0
    int lease_ms = 10'000;     // a generation's ticket, renewed while it runs (see proxy.toml)
  } redis;
};

struct PipelineConfig {
  int batch_window_ms = 2;
  int batch_max = 256;
};

struct UpstreamConfig {
  std::string name;
  std::string kind = "openai";  // the API it speaks: "openai", "anthropic" or "gemini"
  std::string base_url;
  std::string api_key_env;                  // used when a client sends no credential
  std::string ca_file;                      // extra trusted CA bundle (PEM); system store always
  Millis connect_timeout{5'000};            // TCP connect and TLS handshake
  Millis first_byte_timeout{120'000};       // request sent to response headers
  Millis read_idle_timeout{60'000};         // longest silence inside a response body
  Millis total_timeout{600'000};            // whole exchange, retries included
  int max_retries = 2;                      // on connect errors, 429 and 5xx
  Millis retry_backoff{250};                // first backoff; doubles, with jitter
  Millis retry_backoff_max{8'000};
  Millis max_retry_after{30'000};           // a longer Retry-After is relayed, not waited
  int max_idle_connections = 256;           // kept-alive connections in the pool
  uint64_t max_response_bytes = 64ull << 20;  // non-streamed responses above are a 502
  int max_n = 128;                          // largest n per call; 1 for APIs without n

  // Derived from base_url by load_config.
  bool tls = false;
  std::string host;
  uint16_t port = 0;
  std::string base_path;  // e.g. "/v1"; no trailing slash
  // Read from the environment at load time; never logged or printed.
  std::string api_key;
};

struct ModelRoute {
  std::string match;    // glob on the request's model: * ? [...]
  std::string backend;  // an upstream name, or "engine"
};

struct EngineConfig {
  std::string model;  // path to a GGUF file; empty = no engine
  std::string name;   // the model's id in /v1/models; empty = the file name without .gguf
  std::string quantize;  // "" = keep the file's types; "q8_0" or "q4_0" = requantize at load
  int context = 4096;    // tokens per sequence, capped at the model's; 0 = the model's
  int max_queued = 64;   // generations waiting for the engine; beyond, 503 + Retry-After
  int threads = 0;       // forward-pass threads; 0 = all cores
  std::string device = "auto";  // "auto" (CUDA when a GPU can take the model, else the CPU), "cpu" or "cuda"
  // Continuous batching over the paged KV cache (engine/scheduler.hpp).
  int kv_block_tokens = 16;    // KV positions per block
  int kv_cache_mb = 1024;      // the KV pool (raised to at least one full context)
  int max_batch_tokens = 512;  // tokens per batched forward pass
  int max_sequences = 64;      // samples decoding at once, all jobs together
  // LayerSkip self-speculative decoding (engine/speculative.hpp).
  int early_exit_layer = 0;    // 0 = off; E > 0 drafts with the first E layers
  int draft_tokens = 4;        // drafts verified per full pass
  bool early_exit_only = false;  // serve the E-layer draft unverified (lossy); needs E > 0
};

// One [[energy.models]] rule: models matching `match` (exact name or glob) belong to
// `energy_class`, or have their own coefficients when a, b and c are all given.
struct EnergyModelRule {
  std::string match;
  std::string energy_class;   // small | medium | large | frontier
  double a = -1, b = -1, c = -1;  // J per prompt token, per completion token, per call
};

struct EnergyConfig {
  double grid_intensity_g_per_kwh = 475;  // CodeCarbon's world average
  double pue = 1.2;                       // remote APIs
  double pue_local = 1.0;                 // the in-process engine
  std::string default_class = "frontier"; // models nothing else resolves
  std::string csv_path = "data/energy.csv";  // empty = no CSV
  uint64_t csv_max_bytes = 64ull << 20;   // rotated to <path>.1 beyond
  std::vector<EnergyModelRule> models;
};

// One [[prices]] entry: what a model's tokens cost (USD per million), for the
// money-equivalent of the tokens the cache avoided. First matching glob wins.
struct PriceConfig {
  std::string match;
  double prompt_per_million = 0;
  double completion_per_million = 0;
};

struct LogConfig {
  std::string level = "info";
  bool access_log = true;
};

struct Config {
  ServerConfig server;
  AdminConfig admin;
  CacheConfig cache;
  PipelineConfig pipeline;
  std::vector<UpstreamConfig> upstreams;
  std::vector<ModelRoute> models;
  EngineConfig engine;
  EnergyConfig energy;
  std::vector<PriceConfig> prices;  // none by default: costs show as 0
  LogConfig log;
};

// Parses and validates a TOML document. Every problem is reported, each naming the
// key and its line: unknown keys, wrong types, out-of-range values, dangling routes.
// `source_name` is used in messages. Environment lookups (API keys, the admin token
// override) happen here too, so the rest of the program never reads getenv.
Result<Config> parse_config(std::string_view toml_text, std::string_view source_name);
Result<Config> load_config(const std::string& path);

// "host:port" or "[v6]:port".
std::optional<HostPort> parse_host_port(std::string_view text);

}  // namespace reprise
