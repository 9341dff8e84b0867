// End to end through the real binary: memory a client can grow stays bounded, and a
// full disk leaves the proxy answering, counting, and caching again once space returns.
#include <doctest/doctest.h>

#include <sys/mount.h>

#include <cstring>
#include <fstream>
#include <thread>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;

namespace {

// The proxy's resident memory, from /proc/<pid>/status (VmRSS, kB).
uint64_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("VmRSS:")) return std::stoull(line.substr(6)) * 1024;
  throw std::runtime_error("no VmRSS for pid " + std::to_string(pid));
}

// A chat body of about `bytes` made of many short messages: its parsed JSON is about
// ten times its text, the worst case for a memo that counted entries, not bytes.
std::string many_messages_body(int id, size_t bytes) {
  json messages = json::array();
  std::string text;
  for (int i = 0; text.size() < bytes - 200; ++i) {
    messages.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", std::string("m") + std::to_string(i)}});
    if (i % 64 == 0) text = messages.dump();
  }
  messages.push_back({{"role", "user"}, {"content", "request " + std::to_string(id)}});
  json body = {{"model", "gpt-4o-mini"}, {"messages", messages}};
  std::string out = body.dump();
  while (out.size() > bytes) {  // trim to fit the memo's body limit
    body["messages"].erase(body["messages"].size() - 2);
    out = body.dump();
  }
  return out;
}

json admin_stats(Stack& s) { return request(s.proxy.admin_port(), "GET", "/admin/stats").json(); }

}  // namespace

TEST_CASE("limits: 4,096 distinct 16 KB only-cached requests do not grow the proxy past its memo bound") {
  ProxyConfig config;
  config.cache_lines = "canonical_memo_mb = 16\n";
  Stack s(config);
  const std::vector<std::pair<std::string, std::string>> only_cached = {{"X-Reprise-Cache", "only-cached"}};
  // Warm up the allocator and the threads on the same kind of traffic first.
  for (int i = 0; i < 64; ++i)
    REQUIRE(request(s.proxy.port(), "POST", "/v1/chat/completions", many_messages_body(-1 - i, 16000), only_cached)
                .status == 504);
  const uint64_t before = rss_bytes(s.proxy.process().pid());
  for (int i = 0; i < 4096; ++i) {
    auto r = request(s.proxy.port(), "POST", "/v1/chat/completions", many_messages_body(i, 16000), only_cached);
    REQUIRE(r.status == 504);
  }
  const uint64_t after = rss_bytes(s.proxy.process().pid());
  const double grown_mb = (double(after) - double(before)) / (1 << 20);
  MESSAGE("RSS " << before / (1 << 20) << " MB -> " << after / (1 << 20) << " MB");
  // The memo's 16 MB plus slack for the allocator; the unbounded memo grew by ~700 MB.
  CHECK(grown_mb < 16 + 48);
  CHECK(s.fake.stats()["calls"] == 0);
}

TEST_CASE("limits: distinct model names beyond stats_max_models are folded into _other") {
  ProxyConfig config;
  config.cache_lines = "stats_max_models = 20\n";
  Stack s(config);
  for (int i = 0; i < 60; ++i) {
    json body = chat_body("hello");
    body["model"] = "model-" + std::to_string(i);
    REQUIRE(post_json(s.proxy.port(), "/v1/chat/completions", body).status == 200);
  }
  json body = chat_body("hello");
  body["model"] = std::string(2000, 'x');  // a long name is never kept apart
  REQUIRE(post_json(s.proxy.port(), "/v1/chat/completions", body).status == 200);

  json stats = admin_stats(s);
  const json& models = stats["models"];
  CHECK(models.size() <= 21);  // 20 names and "_other"
  CHECK(models.contains("_other"));
  CHECK_FALSE(models.contains(std::string(2000, 'x')));
  CHECK(stats["labels_dropped"]["models"].get<uint64_t>() >= 41);
  CHECK(stats["requests"] == 61);  // the totals still count every request
}

namespace {

// A small tmpfs for the cache (the tests run as root). No mount, no test: a failure.
class Tmpfs {
 public:
  Tmpfs(const std::filesystem::path& at, const std::string& size) : at_(at) {
    std::filesystem::create_directories(at);
    mounted_ = ::mount("tmpfs", at.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
    if (!mounted_) throw std::runtime_error("cannot mount a tmpfs at " + at.string() + ": " + std::strerror(errno));
  }
  ~Tmpfs() {
    if (mounted_) ::umount2(at_.c_str(), MNT_DETACH);
  }

 private:
  std::filesystem::path at_;
  bool mounted_ = false;
};

// Writes to `path` until the filesystem is full.
void fill(const std::filesystem::path& path) {
  FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f);
  std::string block(1 << 16, 'f');
  while (std::fwrite(block.data(), 1, block.size(), f) == block.size() && std::fflush(f) == 0) {
  }
  std::fclose(f);
}

// A chat request in namespace `ns` with a prompt of `bytes` (stored with the samples,
// so that every miss writes that much to the store).
Response ask(Stack& s, const std::string& prompt, const std::string& ns) {
  return post_json(s.proxy.port(), "/v1/chat/completions", chat_body(prompt), {{"X-Reprise-Namespace", ns}});
}

}  // namespace

TEST_CASE("limits: a full disk leaves the proxy answering, counts the failures, and caching resumes by itself") {
  TempDir mount_dir;
  const auto disk = mount_dir / "disk";
  Tmpfs tmpfs(disk, "16m");
  ProxyConfig config;
  config.cache = (disk / "cache").string();
  config.tail = "\n[energy]\ncsv_path = \"" + (disk / "energy.csv").string() + "\"\n";
  Stack s(config);

  // Cached while there is space: a second namespace gets the first one's sample.
  REQUIRE(ask(s, "before", "a").status == 200);
  REQUIRE(ask(s, "before", "b").header("X-Reprise-Cache") == "hit");

  fill(disk / "filler");
  // Misses of distinct prompts, 256 KB each: every one tries to store its request.
  const std::string big(256 << 10, 'p');
  int relayed = 0;
  for (int i = 0; i < 24; ++i) {
    auto r = ask(s, big + std::to_string(i), "a");
    INFO("request " << i << ": " << r.status << " " << r.body.substr(0, 300));
    CHECK((r.status == 200 || r.status >= 500));
    relayed += r.status == 200;
    REQUIRE(s.proxy.process().running());
  }
  MESSAGE(relayed << " of 24 misses answered 200 while the disk was full");
  CHECK(relayed > 0);
  CHECK(request(s.proxy.admin_port(), "GET", "/healthz").status == 200);
  json stats = admin_stats(s);
  CHECK(stats["store_errors"].get<uint64_t>() > 0);
  CHECK(stats["store_writable"] == false);
  // A hit must persist its namespace's cursor (else a restart would serve the sample
  // again, I1): while nothing can be written, that is a 503 naming the store, with
  // Retry-After (the store recovers by itself).
  auto hit = ask(s, "before", "c");
  INFO(hit.status << " " << hit.body);
  CHECK(hit.status == 503);
  CHECK(hit.header("Retry-After") == "1");
  CHECK(hit.json()["error"]["code"] == "cache_unavailable");
  CHECK(hit.body.find("cache store") != std::string::npos);

  // Space returns: within a bounded time the store writes again, without a restart.
  std::filesystem::remove(disk / "filler");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (admin_stats(s)["store_writable"] != true) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    REQUIRE(s.proxy.process().running());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polling a state, no event to wait on
  }
  REQUIRE(ask(s, "after", "a").status == 200);
  CHECK(ask(s, "after", "b").header("X-Reprise-Cache") == "hit");
  CHECK(admin_stats(s)["store_recoveries"].get<uint64_t>() >= 1);
  // What was stored before the disk filled is still there.
  CHECK(ask(s, "before", "d").header("X-Reprise-Cache") == "hit");
  CHECK(s.proxy.process().running());
  CHECK(s.proxy.log().find("Assertion") == std::string::npos);
}
