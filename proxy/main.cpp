// reprise: a caching reverse proxy for OpenAI-compatible LLM APIs.
// Wires config, upstream clients, the OpenAI handler and the listeners, once.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <chrono>
#include <mutex>
#include <optional>
#include <csignal>
#include <filesystem>
#include <cstdio>
#include <iostream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/cluster_cacher.hpp"
#include "cache/ledger.hpp"
#include "engine/engine.hpp"
#include "proxy/admin_api.hpp"
#include "proxy/admin_cli.hpp"
#include "proxy/config.hpp"
#include "proxy/http_server.hpp"
#include "proxy/log.hpp"
#include "proxy/redis/asio_cluster_client.hpp"
#include "proxy/api_handler.hpp"
#include "proxy/version.hpp"

namespace {

using namespace reprise;

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (auto& part : parts) out += (out.empty() ? "" : separator) + part;
  return out;
}

constexpr const char* kUsage = R"(usage: reprise [--config FILE]
       reprise stats | namespaces [--config FILE] [--admin HOST:PORT] [--token T] [--json]
       reprise export --namespace NS --out FILE [--config FILE] [--admin HOST:PORT] [--token T]
       reprise import FILE [--import-key KEY] [--config FILE] [--admin HOST:PORT] [--token T] [--json]

Runs the Reprise proxy: an OpenAI-compatible endpoint (point your client's base_url
at http://HOST:PORT/v1) and an admin endpoint, as configured in FILE.

subcommands (clients of a running proxy's admin listener, found through FILE):
  stats           what the cache saved: requests, hits, tokens, energy and CO2
  namespaces      each namespace: keys read, samples consumed, savings
  export          write the samples namespace NS consumed to FILE (JSON Lines with a
                  checksum), to publish beside a paper
  import          add such a FILE to the cache, under the tenant of the API key KEY
                  that the replaying clients send (none: clients without Authorization);
                  then replay with the header X-Reprise-Cache: only-cached

options:
  --config FILE   the TOML configuration (default: proxy.toml)
  --check-config  validate the configuration and exit (0 when valid)
  --admin H:P     (subcommands) the admin listener, instead of FILE's [admin] listen
  --token T       (subcommands) the admin token, instead of FILE's or REPRISE_ADMIN_TOKEN
  --json          (subcommands) print the JSON as the admin listener answers it
  --help          this text
  --version       the version

The configuration reference is proxy.toml itself: every key, with its default.
Environment: REPRISE_ADMIN_TOKEN overrides [admin] token; each [[upstreams]]
api_key_env names the variable holding that upstream's API key.
)";

std::string to_string(const tcp::endpoint& endpoint) {
  auto address = endpoint.address();
  std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(endpoint.port());
}

struct Options {
  std::string config_path = "proxy.toml";
  bool check_only = false;
  bool config_given = false;
  std::string command;                 // "stats", "namespaces", "export", "import"; empty: run the proxy
  std::vector<std::string> command_args;
};

// Returns the exit code to leave with, or -1 to go on.
int parse_args(int argc, char** argv, Options& options) {
  int first = 1;
  static constexpr std::string_view kCommands[] = {"stats", "namespaces", "export", "import"};
  if (argc > 1 && std::find(std::begin(kCommands), std::end(kCommands), std::string_view(argv[1])) != std::end(kCommands)) {
    options.command = argv[1];
    first = 2;
  }
  for (int i = first; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (!options.command.empty() && arg != "--config" && !arg.starts_with("--config=")) {
      options.command_args.emplace_back(arg);
      if ((arg == "--admin" || arg == "--token" || arg == "--namespace" || arg == "--out" || arg == "--import-key") &&
          i + 1 < argc)
        options.command_args.emplace_back(argv[++i]);
      continue;
    }
    if (arg == "--help" || arg == "-h") { std::cout << kUsage; return 0; }
    if (arg == "--version") { std::cout << "reprise " << kVersion << "\n"; return 0; }
    if (arg == "--check-config") { options.check_only = true; continue; }
    if (arg == "--config" && i + 1 < argc) { options.config_path = argv[++i]; options.config_given = true; continue; }
    if (arg.starts_with("--config=")) { options.config_path = std::string(arg.substr(9)); options.config_given = true; continue; }
    std::cerr << "reprise: unknown argument '" << arg << "'\n" << kUsage;
    return 2;
  }
  return -1;
}

// On SIGINT/SIGTERM: stop accepting, let requests in flight finish for up to
// drain_timeout, then stop the event loop. A second signal stops at once.
awaitable<void> drain_on_signal(asio::io_context& ioc, std::vector<HttpServer*> servers, Millis drain_timeout) {
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  auto [ec, signo] = co_await signals.async_wait(use_nothrow);
  if (ec) co_return;
  log::info("signal " + std::to_string(signo) + ": draining (up to " + std::to_string(drain_timeout.count()) + " ms)");
  for (auto* server : servers) server->drain();
  signals.async_wait([&ioc](beast::error_code e, int) {
    if (!e) { log::warn("second signal: stopping now"); ioc.stop(); }
  });
  auto deadline = std::chrono::steady_clock::now() + drain_timeout;
  asio::steady_timer poll(ioc);
  for (;;) {
    size_t open = 0;
    for (auto* server : servers) open += server->connections();
    if (open == 0) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      log::warn("drain timeout: closing " + std::to_string(open) + " connections");
      break;
    }
    poll.expires_after(std::chrono::milliseconds(20));
    co_await poll.async_wait(use_nothrow);
  }
  ioc.stop();
}

// The stats counters live in the store's meta records under this name.
constexpr const char* kStatsRecord = "stats";

// Saves the counters every few seconds, so a crash loses at most that much of them.
// On its own thread, at a milder priority: serialising thousands of namespaces takes
// tens of milliseconds, which on an I/O thread stalled every connection that thread
// serves (bench/hit_path.sh: p99 of 300 ms at 256 connections).
class PeriodicSaver {
 public:
  explicit PeriodicSaver(std::function<void()> save) : save_(std::move(save)), thread_([this] { run(); }) {}
  ~PeriodicSaver() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

 private:
  void run() {
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 5);
    std::unique_lock lock(mu_);
    while (!wake_.wait_for(lock, std::chrono::seconds(5), [this] { return stopping_; })) {
      lock.unlock();
      save_();
      lock.lock();
    }
  }

  std::function<void()> save_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

// "0.8M", "39M", "1236M": a model's size for the log.
std::string params_text(uint64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, n < 10'000'000 ? "%.1fM" : "%.0fM", double(n) / 1e6);
  return buf;
}

int run(const Config& config) {
  int threads = config.server.threads > 0 ? config.server.threads
                                          : std::max(1u, std::thread::hardware_concurrency());
  asio::io_context ioc(threads);

  std::vector<std::unique_ptr<UpstreamClient>> clients;
  for (auto& up : config.upstreams) {
    auto client = UpstreamClient::create(ioc.get_executor(), up);
    if (!client) { log::error(client.error().message); return 2; }
    clients.push_back(std::move(client.value()));
  }
  // The engine, when [engine] model is set: loaded before anything listens, so a bad
  // file stops the start with its reason instead of failing requests later.
  std::unique_ptr<engine::Engine> loaded_engine;
  if (!config.engine.model.empty()) {
    engine::EngineOptions eo;
    eo.model_path = config.engine.model;
    eo.name = config.engine.name;
    eo.threads = config.engine.threads;
    eo.context = config.engine.context;
    eo.max_queued = config.engine.max_queued;
    eo.kv_block_size = config.engine.kv_block_tokens;
    eo.kv_cache_mb = config.engine.kv_cache_mb;
    eo.max_batch_tokens = config.engine.max_batch_tokens;
    eo.max_sequences = config.engine.max_sequences;
    eo.exit_layer = config.engine.early_exit_layer;
    eo.draft_tokens = config.engine.draft_tokens;
    eo.early_exit_only = config.engine.early_exit_only;
    engine::parse_device(config.engine.device, &eo.device);  // checked by the config loader
    eo.quantize = config.engine.quantize == "q8_0"   ? engine::GgmlType::Q8_0
                  : config.engine.quantize == "q4_0" ? engine::GgmlType::Q4_0
                                                     : engine::GgmlType::F32;
    if (!std::filesystem::exists(config.engine.model)) {
      log::error("[engine] model " + config.engine.model + " does not exist" +
                 (config.engine.model == "data/models/reprise-demo.gguf"
                      ? " (`make demo-model` generates this demo; or set [engine] model = \"\" and remove the engine's [[models]] entry)"
                      : ""));
      return 1;
    }
    auto loaded = engine::Engine::load(eo);
    if (!loaded.ok()) {
      // The one option only the model can check: early_exit_layer below its layer count.
      const bool exit_layer = loaded.error().find("exit_layer") != std::string::npos;
      const bool device = eo.device == engine::Device::Cuda && loaded.error().find("cuda") != std::string::npos;
      log::error(loaded.error() + (exit_layer ? " (set by [engine] early_exit_layer)" : "") +
                 (device ? " ([engine] device = \"cuda\" requires the GPU; \"auto\" falls back to the CPU)" : ""));
      return 1;
    }
    loaded_engine = std::move(loaded.value());
    const engine::EngineInfo& info = loaded_engine->info();
    log::info("engine: " + info.name + " from " + info.path + ", " + params_text(info.n_params) + " parameters in " +
              info.weight_type + ", context " + std::to_string(info.n_ctx) + ", " + std::to_string(info.threads) +
              " threads on the " + info.device + ", chat template " +
              (info.chat_family.empty() ? "none (" + info.chat_error + ")" : info.chat_family));
    // Which device, and why: the one line that says whether the GPU is used.
    std::string where = "engine: device " + info.device;
    if (info.device == "cuda") where += " (" + info.device_name + ")";
    else where += " (" + (info.device_note.empty() ? std::string("[engine] device = \"cpu\"") : info.device_note) + ")";
    where += "; energy " + info.energy_method +
             (info.energy_method == "measured" ? " with NVML"
              : info.energy_note.empty()       ? std::string(" from token counts")
                                               : " from token counts (" + info.energy_note + ")");
    log::info(where);
    const ModelRoute* route = route_model(config.models, info.name);
    if (!route || route->backend != "engine")
      log::warn("engine: [[models]] does not route the engine's own name \"" + info.name +
                "\" to it; /v1/models lists it under that name");
  }
  // The cache: opened before anything listens. A damaged store is moved aside and an
  // empty one started, so the proxy keeps serving (Store::Open); other failures (a
  // lock held by another proxy, permissions) stop the start.
  //
  // With store = "redis-cluster" the lists live in the cluster (DESIGN.md section
  // 10), and so does the tenant secret (one API key is one tenant on every replica);
  // the local store, in a directory named after the cluster's identity so that it is
  // never mixed with another cluster's samples, keeps the samples this replica read.
  std::unique_ptr<cache::ClusterClient> cluster;
  std::optional<cache::ClusterCacher::Shared> shared;
  std::string local_path = config.cache.path;
  if (config.cache.store == "redis-cluster") {
    redis::ClusterOptions co;
    co.seeds = config.cache.redis.nodes;
    if (!config.cache.redis.password_env.empty()) {
      const char* password = std::getenv(config.cache.redis.password_env.c_str());
      if (!password || !*password) {
        log::error("[cache.redis] password_env names $" + config.cache.redis.password_env + ", which is not set");
        return 1;
      }
      co.password = password;
    }
    co.timeout = Millis(config.cache.redis.timeout_ms);
    co.wait_replicas = config.cache.redis.wait_replicas;
    std::string error;
    cluster = redis::connect_cluster(std::move(co), &error);
    if (!cluster) {
      log::error("cannot reach the Redis Cluster at " + join(config.cache.redis.nodes, ", ") + ": " + error);
      return 1;
    }
    auto read = cache::ClusterCacher::ReadShared(*cluster);
    if (!read) {
      log::error("cannot read the cluster's shared secret: " + read.error().message());
      return 1;
    }
    shared = std::move(read.value());
    local_path = (std::filesystem::path(config.cache.path) / ("cluster-" + shared->cluster_id)).string();
  }
  cache::OpenReport report;
  auto store = cache::Store::Open(local_path, &report);
  if (!store) {
    log::error("cannot open the cache at " + local_path + ": " + store.error().message());
    return 1;
  }
  if (report.moved_aside)
    log::error("the cache at " + local_path + " was damaged (" + report.reason + "); moved to " +
               report.moved_to + ", starting empty");
  auto secret = shared ? cache::StatusOr<std::string>(shared->secret) : store.value()->ServerSecret();
  if (!secret) {
    log::error("cannot read the server secret: " + secret.error().message());
    return 1;
  }
  cache::BatcherOptions batching{Millis(config.pipeline.batch_window_ms), size_t(config.pipeline.batch_max)};
  auto schedule = [&ioc](Millis delay, std::function<void()> task) {
    auto timer = std::make_shared<asio::steady_timer>(ioc, delay);
    timer->async_wait([timer, task = std::move(task)](beast::error_code) { task(); });
  };
  // The ledger: savings and energy, counters restored from the store.
  cache::LedgerOptions accounting;
  accounting.grid_g_per_kwh = config.energy.grid_intensity_g_per_kwh;
  accounting.pue_remote = config.energy.pue;
  accounting.pue_local = config.energy.pue_local;
  accounting.default_class = config.energy.default_class;
  accounting.csv_path = config.energy.csv_path;
  for (auto& price : config.prices)
    accounting.prices.push_back({price.match, price.prompt_per_million, price.completion_per_million});
  accounting.csv_max_bytes = config.energy.csv_max_bytes;
  accounting.stats_max_namespaces = size_t(config.cache.stats_max_namespaces);
  accounting.stats_max_models = size_t(config.cache.stats_max_models);
  for (auto& rule : config.energy.models) {
    cache::EnergyRule r{rule.match, rule.energy_class, std::nullopt};
    if (rule.a >= 0) r.coefficients = cache::EnergyCoefficients{rule.a, rule.b, rule.c};
    accounting.rules.push_back(std::move(r));
  }
  // The engine's energy is estimated like an API's, in the class its size gives
  // (DESIGN.md section 5), for every model routed to it; [[energy.models]] rules,
  // read first, still win.
  if (loaded_engine) {
    const uint64_t params = loaded_engine->info().n_params;
    const char* cls = params <= 10'000'000'000ull ? "small" : params <= 40'000'000'000ull ? "medium" : "large";
    for (auto& route : config.models)
      if (route.backend == "engine") accounting.rules.push_back(cache::EnergyRule{route.match, cls, std::nullopt});
  }
  cache::Ledger ledger(std::move(accounting));
  if (auto saved = store.value()->GetMeta(kStatsRecord); saved.ok() && saved->has_value()) {
    auto parsed = nlohmann::json::parse(**saved, nullptr, false);
    ledger.restore(parsed);
  }

  cache::CacherOptions caching;
  caching.hot_sample_bytes = size_t(config.cache.hot_samples_mb) << 20;
  caching.max_new_samples = static_cast<uint32_t>(config.cache.max_new_samples);
  caching.on_generation_end = [&ledger](const cache::Generation& gen, cache::Generation::State state) {
    ledger.on_generation_end(gen, state);
  };
  // A full disk fails every write: one line a second, with how many were not logged.
  caching.on_store_error = [](const cache::Status& st) {
    static std::mutex mu;
    static std::chrono::steady_clock::time_point last{};
    static uint64_t suppressed = 0;
    std::lock_guard lock(mu);
    const auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::seconds(1)) {
      ++suppressed;
      return;
    }
    std::string more = suppressed ? " (and " + std::to_string(suppressed) + " more since the last line)" : "";
    last = now;
    suppressed = 0;
    log::error("cache write failed: " + st.message() + more);
  };
  std::unique_ptr<cache::Pipeline> pipeline_owner;
  if (cluster) {
    cache::ClusterCacherOptions cc;
    cc.hot_sample_bytes = caching.hot_sample_bytes;
    cc.max_new_samples = caching.max_new_samples;
    cc.lease = Millis(config.cache.redis.lease_ms);
    cc.on_store_error = caching.on_store_error;
    cc.on_generation_end = caching.on_generation_end;
    auto lists = cache::ClusterCacher::Open(*cluster, *store.value(), std::move(cc));
    if (!lists) {
      log::error(lists.error().message());
      return 1;
    }
    pipeline_owner = std::make_unique<cache::Pipeline>(std::move(lists.value()), batching, schedule);
  } else {
    pipeline_owner = std::make_unique<cache::Pipeline>(*store.value(), batching, schedule, std::move(caching));
  }
  cache::Pipeline& pipeline = *pipeline_owner;

  // Declared after the pipeline and the ledger, so it stops (and fails what it still
  // holds) while they exist.
  std::unique_ptr<engine::Engine> engine = std::move(loaded_engine);
  AdminContext admin_context{&pipeline, &ledger, store.value().get(), secret.value(),
                             config.cache.share_across_keys, {}};
  if (engine) admin_context.engine_stats = [e = engine.get()] { return engine_stats_json(*e); };
  ApiHandler api(config, ioc.get_executor(), std::move(clients), &pipeline, std::move(secret.value()), &ledger,
                engine.get());
  AdminApi admin(config.admin.token, std::move(admin_context));

  HttpServer proxy_server(ioc, "proxy", config.server, config.log.access_log,
                          [&api](Request& req, ResponseWriter& w) { return api.handle(req, w); });
  HttpServer admin_server(ioc, "admin", config.server, false,
                          [&admin](Request& req, ResponseWriter& w) { return admin.handle(req, w); });

  auto proxy_at = proxy_server.bind(*parse_host_port(config.server.listen));
  if (!proxy_at) { log::error(proxy_at.error().message); return 1; }
  auto admin_at = admin_server.bind(*parse_host_port(config.admin.listen));
  if (!admin_at) { log::error(admin_at.error().message); return 1; }
  if (!admin_at.value().address().is_loopback() && config.admin.token.empty()) {
    log::error("refusing to serve the admin endpoint on non-loopback " + to_string(admin_at.value()) +
               " without a token: set [admin] token or REPRISE_ADMIN_TOKEN");
    return 2;
  }

  log::info(std::string("reprise ") + kVersion + " with " + std::to_string(threads) + " threads, " +
            std::to_string(config.upstreams.size()) + " upstreams");
  for (auto& up : config.upstreams)
    log::info("upstream \"" + up.name + "\" (" + up.kind + ") at " + up.base_url +
              (up.api_key.empty() ? " (no configured key: clients' credentials are forwarded)" : " (configured key from $" + up.api_key_env + ")"));
  if (cluster)
    log::info("cache on the Redis Cluster at " + join(config.cache.redis.nodes, ", ") + " (" +
              std::to_string(cluster->topology().value("shards", 0)) + " shards), local copies at " + local_path);
  else
    log::info("cache at " + config.cache.path);
  log::info("proxy listening on " + to_string(proxy_at.value()));
  log::info("admin listening on " + to_string(admin_at.value()));
  proxy_server.start();
  admin_server.start();

  asio::co_spawn(ioc, drain_on_signal(ioc, {&proxy_server, &admin_server}, config.server.drain_timeout),
                 asio::detached);
  // Only when something changed: an idle proxy does not re-serialise every
  // namespace's counters every 5 s.
  uint64_t saved_changes = ledger.stats().changes();
  auto save_stats = [&] {
    const uint64_t changes = ledger.stats().changes();
    if (changes == saved_changes) return;
    std::string record = ledger.stats().persistent().dump();
    // A failed save (a full disk) is tried again at the next tick.
    if (auto st = store.value()->PutMeta(kStatsRecord, record); !st.ok())
      log::warn("saving the stats counters failed: " + st.message());
    else
      saved_changes = changes;
  };
  std::optional<PeriodicSaver> saver(std::in_place, save_stats);

  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  saver.reset();  // joins the saver before the last save, which runs here
  save_stats();
  if (ledger.csv()) ledger.csv()->flush();
  log::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (int code = parse_args(argc, argv, options); code >= 0) return code;

  // The subcommands need only [admin]: without a proxy.toml here, the defaults do.
  const bool defaults_will_do = !options.command.empty() && !options.config_given &&
                                !std::filesystem::exists(options.config_path);
  auto config = defaults_will_do ? parse_config("", "defaults") : load_config(options.config_path);
  if (!config) {
    std::cerr << "reprise: invalid configuration:\n" << config.error().message << "\n";
    return 2;
  }
  if (!options.command.empty()) return run_admin_command(options.command, options.command_args, config.value());
  if (options.check_only) {
    std::cout << "reprise: " << options.config_path << " is valid\n";
    return 0;
  }
  log::Level level;
  log::parse_level(config.value().log.level, level);
  log::set_level(level);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not kill the proxy
  try {
    return run(config.value());
  } catch (const std::exception& e) {
    // Start-up only: the data path reports errors as values.
    log::error(std::string("fatal: ") + e.what());
    return 1;
  }
}
