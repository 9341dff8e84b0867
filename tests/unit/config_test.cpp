#include <doctest/doctest.h>

#include <cstdlib>

#include "proxy/config.hpp"

using namespace reprise;

namespace {

Config parse_ok(const std::string& text) {
  auto result = parse_config(text, "test.toml");
  INFO((result.ok() ? std::string() : result.error().message));
  REQUIRE(result.ok());
  return result.value();
}

std::string parse_error(const std::string& text) {
  auto result = parse_config(text, "test.toml");
  REQUIRE_FALSE(result.ok());
  return result.error().message;
}

}  // namespace

TEST_CASE("an empty file gives every default") {
  ::unsetenv("REPRISE_ADMIN_TOKEN");
  Config c = parse_ok("");
  CHECK(c.server.listen == "127.0.0.1:8080");
  CHECK(c.server.threads == 0);
  CHECK(c.server.max_connections == 4096);
  CHECK(c.server.max_header_bytes == 16384);
  CHECK(c.server.max_body_bytes == 8u * 1024 * 1024);
  CHECK(c.server.header_timeout == Millis(10000));
  CHECK(c.server.idle_timeout == Millis(60000));
  CHECK(c.admin.listen == "127.0.0.1:9090");
  CHECK(c.admin.token.empty());
  CHECK(c.cache.path == "data/cache");
  CHECK(c.cache.greedy_reuse);
  CHECK_FALSE(c.cache.share_across_keys);
  CHECK(c.pipeline.batch_window_ms == 2);
  CHECK(c.pipeline.batch_max == 256);
  REQUIRE(c.upstreams.size() == 1);
  CHECK(c.upstreams[0].name == "openai");
  CHECK(c.upstreams[0].tls);
  CHECK(c.upstreams[0].host == "api.openai.com");
  CHECK(c.upstreams[0].port == 443);
  CHECK(c.upstreams[0].base_path == "/v1");
  CHECK(c.upstreams[0].api_key_env == "OPENAI_API_KEY");
  CHECK(c.upstreams[0].max_retries == 2);
  REQUIRE(c.models.size() == 1);
  CHECK(c.models[0].match == "*");
  CHECK(c.models[0].backend == "openai");
  CHECK(c.engine.model.empty());
  CHECK(c.engine.kv_block_tokens == 16);
  CHECK(c.engine.kv_cache_mb == 1024);
  CHECK(c.engine.max_batch_tokens == 512);
  CHECK(c.engine.max_sequences == 64);
  CHECK(c.engine.early_exit_layer == 0);
  CHECK(c.engine.draft_tokens == 4);
  CHECK_FALSE(c.engine.early_exit_only);
  CHECK(c.engine.device == "auto");
  CHECK(c.energy.grid_intensity_g_per_kwh == 475);
  CHECK(c.energy.pue == doctest::Approx(1.2));
  CHECK(c.log.level == "info");
}

// proxy.toml documents every key with its default: loading it must give exactly the
// built-in defaults, so the file and the code cannot drift apart.
TEST_CASE("the shipped proxy.toml states exactly the defaults") {
  ::unsetenv("REPRISE_ADMIN_TOKEN");
  auto shipped = load_config(std::string(REPRISE_SOURCE_DIR) + "/proxy.toml");
  INFO((shipped.ok() ? std::string() : shipped.error().message));
  REQUIRE(shipped.ok());
  Config d = parse_ok("");
  const Config& s = shipped.value();
  CHECK(s.server.listen == d.server.listen);
  CHECK(s.server.threads == d.server.threads);
  CHECK(s.server.max_connections == d.server.max_connections);
  CHECK(s.server.max_header_bytes == d.server.max_header_bytes);
  CHECK(s.server.max_body_bytes == d.server.max_body_bytes);
  CHECK(s.server.header_timeout == d.server.header_timeout);
  CHECK(s.server.body_gap_timeout == d.server.body_gap_timeout);
  CHECK(s.server.request_timeout == d.server.request_timeout);
  CHECK(s.server.idle_timeout == d.server.idle_timeout);
  CHECK(s.server.write_timeout == d.server.write_timeout);
  CHECK(s.server.drain_timeout == d.server.drain_timeout);
  CHECK(s.admin.listen == d.admin.listen);
  CHECK(s.admin.token == d.admin.token);
  CHECK(s.cache.path == d.cache.path);
  CHECK(s.cache.greedy_reuse == d.cache.greedy_reuse);
  CHECK(s.cache.share_across_keys == d.cache.share_across_keys);
  CHECK(s.cache.hot_samples_mb == d.cache.hot_samples_mb);
  CHECK(s.cache.canonical_memo_mb == d.cache.canonical_memo_mb);
  CHECK(s.cache.stats_max_namespaces == d.cache.stats_max_namespaces);
  CHECK(s.cache.stats_max_models == d.cache.stats_max_models);
  CHECK(s.pipeline.batch_window_ms == d.pipeline.batch_window_ms);
  CHECK(s.pipeline.batch_max == d.pipeline.batch_max);
  REQUIRE(s.upstreams.size() == 1);
  const auto& su = s.upstreams[0];
  UpstreamConfig du;  // the per-field defaults
  CHECK(su.name == "openai");
  CHECK(su.base_url == "https://api.openai.com/v1");
  CHECK(su.api_key_env == "OPENAI_API_KEY");
  CHECK(su.ca_file == du.ca_file);
  CHECK(su.connect_timeout == du.connect_timeout);
  CHECK(su.first_byte_timeout == du.first_byte_timeout);
  CHECK(su.read_idle_timeout == du.read_idle_timeout);
  CHECK(su.total_timeout == du.total_timeout);
  CHECK(su.max_retries == du.max_retries);
  CHECK(su.retry_backoff == du.retry_backoff);
  CHECK(su.retry_backoff_max == du.retry_backoff_max);
  CHECK(su.max_retry_after == du.max_retry_after);
  CHECK(su.max_idle_connections == du.max_idle_connections);
  CHECK(su.max_n == du.max_n);
  CHECK(su.max_response_bytes == du.max_response_bytes);
  // The one deliberate difference: the shipped file serves the demo model that
  // `make run` generates, under the model name "reprise-demo".
  REQUIRE(s.models.size() == 2);
  CHECK(s.models[0].match == "reprise-demo");
  CHECK(s.models[0].backend == "engine");
  CHECK(s.models[1].match == d.models[0].match);
  CHECK(s.models[1].backend == d.models[0].backend);
  CHECK(d.engine.model.empty());
  CHECK(s.engine.model == "data/models/reprise-demo.gguf");
  CHECK(s.engine.name == d.engine.name);
  CHECK(s.engine.quantize == d.engine.quantize);
  CHECK(s.engine.context == d.engine.context);
  CHECK(s.engine.max_queued == d.engine.max_queued);
  CHECK(s.engine.threads == d.engine.threads);
  CHECK(s.engine.kv_block_tokens == d.engine.kv_block_tokens);
  CHECK(s.engine.kv_cache_mb == d.engine.kv_cache_mb);
  CHECK(s.engine.max_batch_tokens == d.engine.max_batch_tokens);
  CHECK(s.engine.max_sequences == d.engine.max_sequences);
  CHECK(s.engine.early_exit_layer == d.engine.early_exit_layer);
  CHECK(s.engine.draft_tokens == d.engine.draft_tokens);
  CHECK(s.engine.early_exit_only == d.engine.early_exit_only);
  CHECK(s.engine.device == d.engine.device);
  CHECK(s.energy.grid_intensity_g_per_kwh == d.energy.grid_intensity_g_per_kwh);
  CHECK(s.energy.pue == d.energy.pue);
  CHECK(s.energy.pue_local == d.energy.pue_local);
  CHECK(s.energy.default_class == d.energy.default_class);
  CHECK(s.energy.csv_path == d.energy.csv_path);
  CHECK(s.energy.csv_max_bytes == d.energy.csv_max_bytes);
  CHECK(s.energy.models.empty());
  CHECK(s.log.level == d.log.level);
  CHECK(s.log.access_log == d.log.access_log);
}

TEST_CASE("every key is read") {
  ::setenv("REPRISE_TEST_CFG_KEY", "sk-from-env", 1);
  ::unsetenv("REPRISE_ADMIN_TOKEN");
  Config c = parse_ok(R"(
[server]
listen = "0.0.0.0:1234"
threads = 3
max_connections = 10
max_header_bytes = 2048
max_body_bytes = 4096
header_timeout_ms = 1
body_gap_timeout_ms = 2
request_timeout_ms = 3
idle_timeout_ms = 4
write_timeout_ms = 5
drain_timeout_ms = 6
[admin]
listen = "127.0.0.1:9999"
token = "tok"
[cache]
path = "/tmp/x"
greedy_reuse = false
share_across_keys = true
hot_samples_mb = 0
[pipeline]
batch_window_ms = 7
batch_max = 8
[[upstreams]]
name = "a"
base_url = "http://127.0.0.1:8000/v1/"
api_key_env = "REPRISE_TEST_CFG_KEY"
ca_file = "/etc/ca.pem"
connect_timeout_ms = 11
first_byte_timeout_ms = 12
read_idle_timeout_ms = 13
total_timeout_ms = 14
max_retries = 5
retry_backoff_ms = 15
retry_backoff_max_ms = 16
max_retry_after_ms = 17
max_idle_connections = 18
max_n = 1
max_response_bytes = 4096
[[upstreams]]
name = "b"
base_url = "https://[::1]:8443"
[[models]]
match = "gpt-*"
backend = "a"
[[models]]
match = "*"
backend = "engine"
[engine]
model = "m.gguf"
threads = 2
kv_block_tokens = 32
kv_cache_mb = 256
max_batch_tokens = 128
max_sequences = 8
early_exit_layer = 4
draft_tokens = 6
early_exit_only = true
name = "mine"
quantize = "q4_0"
device = "cpu"
context = 512
max_queued = 3
[energy]
grid_intensity_g_per_kwh = 300
pue = 1
pue_local = 1.1
default_class = "large"
csv_path = ""
csv_max_bytes = 5000
[[energy.models]]
match = "gpt-4o-mini*"
class = "medium"
[[energy.models]]
match = "mine"
a = 0.1
b = 0.6
c = 2
[log]
level = "debug"
access_log = false
)");
  CHECK(c.server.listen == "0.0.0.0:1234");
  CHECK(c.server.threads == 3);
  CHECK(c.server.max_connections == 10);
  CHECK(c.server.max_header_bytes == 2048);
  CHECK(c.server.max_body_bytes == 4096);
  CHECK(c.server.header_timeout == Millis(1));
  CHECK(c.server.body_gap_timeout == Millis(2));
  CHECK(c.server.request_timeout == Millis(3));
  CHECK(c.server.idle_timeout == Millis(4));
  CHECK(c.server.write_timeout == Millis(5));
  CHECK(c.server.drain_timeout == Millis(6));
  CHECK(c.admin.listen == "127.0.0.1:9999");
  CHECK(c.admin.token == "tok");
  CHECK(c.cache.path == "/tmp/x");
  CHECK_FALSE(c.cache.greedy_reuse);
  CHECK(c.cache.share_across_keys);
  CHECK(c.cache.hot_samples_mb == 0);
  CHECK(c.pipeline.batch_window_ms == 7);
  CHECK(c.pipeline.batch_max == 8);
  REQUIRE(c.upstreams.size() == 2);
  auto& a = c.upstreams[0];
  CHECK(a.name == "a");
  CHECK_FALSE(a.tls);
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 8000);
  CHECK(a.base_path == "/v1");
  CHECK(a.api_key == "sk-from-env");
  CHECK(a.ca_file == "/etc/ca.pem");
  CHECK(a.connect_timeout == Millis(11));
  CHECK(a.first_byte_timeout == Millis(12));
  CHECK(a.read_idle_timeout == Millis(13));
  CHECK(a.total_timeout == Millis(14));
  CHECK(a.max_retries == 5);
  CHECK(a.retry_backoff == Millis(15));
  CHECK(a.retry_backoff_max == Millis(16));
  CHECK(a.max_retry_after == Millis(17));
  CHECK(a.max_idle_connections == 18);
  CHECK(a.max_n == 1);
  CHECK(a.max_response_bytes == 4096);
  auto& b = c.upstreams[1];
  CHECK(b.tls);
  CHECK(b.host == "::1");
  CHECK(b.port == 8443);
  CHECK(b.base_path.empty());
  CHECK(b.api_key.empty());
  REQUIRE(c.models.size() == 2);
  CHECK(c.models[0].match == "gpt-*");
  CHECK(c.models[1].backend == "engine");
  CHECK(c.engine.model == "m.gguf");
  CHECK(c.engine.threads == 2);
  CHECK(c.engine.kv_block_tokens == 32);
  CHECK(c.engine.kv_cache_mb == 256);
  CHECK(c.engine.max_batch_tokens == 128);
  CHECK(c.engine.max_sequences == 8);
  CHECK(c.engine.early_exit_layer == 4);
  CHECK(c.engine.draft_tokens == 6);
  CHECK(c.engine.early_exit_only);
  CHECK(c.engine.name == "mine");
  CHECK(c.engine.quantize == "q4_0");
  CHECK(c.engine.device == "cpu");
  CHECK(c.engine.context == 512);
  CHECK(c.engine.max_queued == 3);
  CHECK(c.energy.grid_intensity_g_per_kwh == 300);
  CHECK(c.energy.pue == 1.0);
  CHECK(c.energy.pue_local == doctest::Approx(1.1));
  CHECK(c.energy.default_class == "large");
  CHECK(c.energy.csv_path.empty());
  CHECK(c.energy.csv_max_bytes == 5000);
  REQUIRE(c.energy.models.size() == 2);
  CHECK(c.energy.models[0].match == "gpt-4o-mini*");
  CHECK(c.energy.models[0].energy_class == "medium");
  CHECK(c.energy.models[1].a == doctest::Approx(0.1));
  CHECK(c.energy.models[1].c == doctest::Approx(2));
  CHECK(c.log.level == "debug");
  CHECK_FALSE(c.log.access_log);
}

TEST_CASE("unknown keys are rejected with the key and its line") {
  CHECK(parse_error("[server]\nlisen = \"x:1\"\n").find("test.toml:2: unknown key 'server.lisen'") != std::string::npos);
  CHECK(parse_error("\n\n[sever]\nlisten = \"x:1\"\n").find("test.toml:3: unknown key 'sever'") != std::string::npos);
  CHECK(parse_error("[[upstreams]]\nname = \"a\"\nbase_url = \"http://h/v1\"\nbse_url = 1\n")
            .find("test.toml:4: unknown key 'upstreams[0].bse_url'") != std::string::npos);
  CHECK(parse_error("[[models]]\nmatch = \"*\"\nbackend = \"openai\"\nweight = 2\n")
            .find("unknown key 'models[0].weight'") != std::string::npos);
}

TEST_CASE("wrong types and out-of-range values are rejected") {
  CHECK(parse_error("[server]\nthreads = \"4\"\n").find("test.toml:2: server.threads: expected an integer, got string") != std::string::npos);
  CHECK(parse_error("[cache]\ngreedy_reuse = 1\n").find("cache.greedy_reuse: expected a boolean, got integer") != std::string::npos);
  CHECK(parse_error("[admin]\ntoken = 5\n").find("admin.token: expected a string") != std::string::npos);
  CHECK(parse_error("[energy]\npue = \"high\"\n").find("energy.pue: expected a number") != std::string::npos);
  CHECK(parse_error("[server]\nmax_connections = 0\n").find("server.max_connections: must be between 1 and") != std::string::npos);
  CHECK(parse_error("[energy]\npue = 0.5\n").find("energy.pue: must be between 1 and 10") != std::string::npos);
  CHECK(parse_error("[energy]\ndefault_class = \"huge\"\n").find("energy.default_class: must be one of") != std::string::npos);
  CHECK(parse_error("[[energy.models]]\nmatch = \"x\"\nclass = \"tiny\"\n").find("energy.models[0].class: must be one of") != std::string::npos);
  CHECK(parse_error("[[energy.models]]\nmatch = \"x\"\na = 1\n").find("give either class, or all of a, b and c") != std::string::npos);
  CHECK(parse_error("[[energy.models]]\nmatch = \"x\"\nclass = \"small\"\nb = 1\nc = 1\na = 1\n").find("give either class") != std::string::npos);
  CHECK(parse_error("[[energy.models]]\nmatch = \"x\"\nclass = \"small\"\nweight = 1\n").find("unknown key 'energy.models[0].weight'") != std::string::npos);
  CHECK(parse_error("[[prices]]\nprompt_per_million = 1\n").find("prices[0].match: is required") != std::string::npos);
  CHECK(parse_error("[[prices]]\nmatch = \"x\"\nprompt_per_million = -1\n").find("prices[0].prompt_per_million: must be between") != std::string::npos);
  CHECK(parse_error("server = 3\n").find("server: expected a table") != std::string::npos);
  CHECK(parse_error("upstreams = 3\n").find("expected [[upstreams]] tables") != std::string::npos);
  CHECK(parse_error("[log]\nlevel = \"loud\"\n").find("log.level: must be one of") != std::string::npos);
}

TEST_CASE("addresses, URLs and routes are validated") {
  CHECK(parse_error("[server]\nlisten = \"localhost\"\n").find("server.listen: must be host:port") != std::string::npos);
  CHECK(parse_error("[server]\nlisten = \"h:99999\"\n").find("server.listen") != std::string::npos);
  CHECK(parse_error("[[upstreams]]\nname = \"a\"\nbase_url = \"ftp://x\"\n").find("upstreams[0].base_url: must be") != std::string::npos);
  CHECK(parse_error("[[upstreams]]\nbase_url = \"http://x\"\n").find("upstreams[0].name: is required") != std::string::npos);
  CHECK(parse_error("[[upstreams]]\nname = \"engine\"\nbase_url = \"http://x\"\n").find("reserved") != std::string::npos);
  CHECK(parse_error("[[upstreams]]\nname = \"a\"\nbase_url = \"http://x\"\n[[upstreams]]\nname = \"a\"\nbase_url = \"http://y\"\n")
            .find("duplicate name \"a\"") != std::string::npos);
  CHECK(parse_error("[[models]]\nmatch = \"*\"\nbackend = \"nowhere\"\n").find("models[0].backend: \"nowhere\" is neither") != std::string::npos);
  CHECK(parse_error("[[models]]\nmatch = \"l*\"\nbackend = \"engine\"\n").find("routes \"l*\" to the engine, but [engine] model is empty") != std::string::npos);
  CHECK(parse_error("[engine]\nmodel = \"m.gguf\"\nquantize = \"q5\"\n").find("engine.quantize: must be") != std::string::npos);
}

TEST_CASE("engine batching and speculation keys are range checked") {
  CHECK(parse_error("[engine]\nkv_cache_mb = 0\n").find("test.toml:2: engine.kv_cache_mb: must be between 1 and 1048576") != std::string::npos);
  CHECK(parse_error("[engine]\nkv_cache_mb = 1048577\n").find("engine.kv_cache_mb: must be between") != std::string::npos);
  CHECK(parse_error("[engine]\nmax_batch_tokens = 0\n").find("engine.max_batch_tokens: must be between 1 and 65536") != std::string::npos);
  CHECK(parse_error("[engine]\nmax_batch_tokens = 65537\n").find("engine.max_batch_tokens: must be between") != std::string::npos);
  CHECK(parse_error("[engine]\nmax_sequences = 0\n").find("engine.max_sequences: must be between 1 and 1024") != std::string::npos);
  CHECK(parse_error("[engine]\nmax_sequences = 1025\n").find("engine.max_sequences: must be between") != std::string::npos);
  CHECK(parse_error("[engine]\nkv_block_tokens = 0\n").find("engine.kv_block_tokens: must be between 1 and 4096") != std::string::npos);
  CHECK(parse_error("[engine]\ndraft_tokens = 0\n").find("engine.draft_tokens: must be between 1 and 64") != std::string::npos);
  CHECK(parse_error("[engine]\nearly_exit_only = 1\n").find("engine.early_exit_only: expected a boolean, got integer") != std::string::npos);
  CHECK(parse_error("[engine]\nkv_cache_mb = \"big\"\n").find("engine.kv_cache_mb: expected an integer") != std::string::npos);
  CHECK(parse_error("[engine]\nmax_sequence = 8\n").find("unknown key 'engine.max_sequence'") != std::string::npos);
  // The extremes of each range are accepted.
  Config low = parse_ok("[engine]\nkv_cache_mb = 1\nmax_batch_tokens = 1\nmax_sequences = 1\n");
  CHECK(low.engine.kv_cache_mb == 1);
  CHECK(low.engine.max_batch_tokens == 1);
  CHECK(low.engine.max_sequences == 1);
  Config high = parse_ok("[engine]\nkv_cache_mb = 1048576\nmax_batch_tokens = 65536\nmax_sequences = 1024\n");
  CHECK(high.engine.kv_cache_mb == 1048576);
  CHECK(high.engine.max_batch_tokens == 65536);
  CHECK(high.engine.max_sequences == 1024);
}

TEST_CASE("early_exit_only needs an early exit layer") {
  // Serving the draft unverified means nothing without a layer to draft from.
  const std::string message = parse_error("[engine]\nearly_exit_only = true\n");
  CHECK(message.find("test.toml:2: engine.early_exit_only: needs early_exit_layer > 0") != std::string::npos);
  CHECK(parse_error("[engine]\nearly_exit_layer = 0\nearly_exit_only = true\n").find("engine.early_exit_only") != std::string::npos);
  Config on = parse_ok("[engine]\nearly_exit_layer = 2\nearly_exit_only = true\n");
  CHECK(on.engine.early_exit_only);
  CHECK(on.engine.early_exit_layer == 2);
  Config off = parse_ok("[engine]\nearly_exit_layer = 2\nearly_exit_only = false\n");
  CHECK_FALSE(off.engine.early_exit_only);
}

TEST_CASE("all problems are reported at once") {
  auto message = parse_error("[server]\nthreads = \"x\"\nbogus = 1\n[cache]\npath = 3\n");
  CHECK(message.find("server.threads") != std::string::npos);
  CHECK(message.find("server.bogus") != std::string::npos);
  CHECK(message.find("cache.path") != std::string::npos);
}

TEST_CASE("TOML syntax errors name the line and column") {
  CHECK(parse_error("[server]\nlisten = \n").find("test.toml:2:") != std::string::npos);
}

TEST_CASE("environment: REPRISE_ADMIN_TOKEN overrides the file, keys come from api_key_env") {
  ::setenv("REPRISE_ADMIN_TOKEN", "from-env", 1);
  CHECK(parse_ok("[admin]\ntoken = \"from-file\"\n").admin.token == "from-env");
  ::unsetenv("REPRISE_ADMIN_TOKEN");
  CHECK(parse_ok("[admin]\ntoken = \"from-file\"\n").admin.token == "from-file");
  ::unsetenv("REPRISE_TEST_ABSENT_KEY");
  CHECK(parse_ok("[[upstreams]]\nname = \"a\"\nbase_url = \"http://h\"\napi_key_env = \"REPRISE_TEST_ABSENT_KEY\"\n")
            .upstreams[0].api_key.empty());
}

TEST_CASE("parse_host_port") {
  CHECK(parse_host_port("127.0.0.1:80")->port == 80);
  CHECK(parse_host_port("[::1]:8080")->host == "::1");
  CHECK(parse_host_port("localhost:0")->port == 0);
  CHECK_FALSE(parse_host_port("::1:80"));
  CHECK_FALSE(parse_host_port(":80"));
  CHECK_FALSE(parse_host_port("h:"));
  CHECK_FALSE(parse_host_port("h:8x"));
  CHECK_FALSE(parse_host_port("h:65536"));
}

TEST_CASE("engine device is auto, cpu or cuda") {
  CHECK(parse_ok("[engine]\ndevice = \"auto\"\n").engine.device == "auto");
  CHECK(parse_ok("[engine]\ndevice = \"cpu\"\n").engine.device == "cpu");
  CHECK(parse_ok("[engine]\ndevice = \"cuda\"\n").engine.device == "cuda");
  // "gpu" is no device name here: refused, naming the key, its line and the choices.
  CHECK(parse_error("[engine]\ndevice = \"gpu\"\n").find("test.toml:2: engine.device: must be \"auto\", \"cpu\" or \"cuda\", got \"gpu\"") != std::string::npos);
  CHECK(parse_error("[engine]\ndevice = \"CUDA\"\n").find("engine.device: must be") != std::string::npos);
  CHECK(parse_error("[engine]\ndevice = 1\n").find("engine.device: expected a string, got integer") != std::string::npos);
}

TEST_CASE("[[upstreams]] kind and [cache.key_ignore]") {
  Config c = parse_ok(R"(
[cache.key_ignore]
anthropic = ["system.1", "metadata.user_id"]
gemini = []
[[upstreams]]
name = "claude"
kind = "anthropic"
base_url = "https://api.anthropic.com/v1"
[[upstreams]]
name = "plain"
base_url = "https://api.openai.com/v1"
)");
  CHECK(c.upstreams[0].kind == "anthropic");
  CHECK(c.upstreams[1].kind == "openai");  // the default
  CHECK(c.cache.key_ignore_anthropic == std::vector<std::string>{"system.1", "metadata.user_id"});
  CHECK(c.cache.key_ignore_openai.empty());
  CHECK(parse_error("[[upstreams]]\nname = \"x\"\nkind = \"cohere\"\nbase_url = \"http://h\"\n")
            .find("kind: must be \"openai\", \"anthropic\" or \"gemini\"") != std::string::npos);
  CHECK(parse_error("[cache.key_ignore]\nmistral = []\n").find("unknown key 'cache.key_ignore.mistral'") != std::string::npos);
  CHECK(parse_error("[cache.key_ignore]\nopenai = [1]\n").find("cache.key_ignore.openai: expected an array of strings") !=
        std::string::npos);
}
