// End to end through the real binary: the namespace-aware list-valued cache
// (DESIGN.md sections 1, 2 and 4) in front of the fake upstream.
#include <doctest/doctest.h>

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <random>
#include <set>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

namespace {

// The upstream calls the fake has seen so far.
int calls(FakeUpstream& fake) { return fake.stats()["calls"].get<int>(); }

Response chat(uint16_t port, const std::string& ns, int n, Headers headers = {},
              const std::string& content = "Tell me a story", bool stream = false) {
  headers.emplace_back("X-Reprise-Namespace", ns);
  return post_json(port, "/v1/chat/completions", chat_body(content, n, stream), headers);
}

std::vector<std::string> contents(const Response& r) {
  std::vector<std::string> out;
  const json body = r.json();
  for (auto& choice : body["choices"]) out.push_back(choice["message"]["content"].get<std::string>());
  return out;
}

// Per choice index, the streamed content pieces joined; also the chunk count.
std::vector<std::string> stream_contents(const Response& r, size_t* chunks = nullptr, bool* done = nullptr) {
  std::vector<std::string> out;
  size_t count = 0;
  for (auto& event : sse_events(r.body, done)) {
    for (auto& choice : event["choices"]) {
      size_t i = choice["index"].get<size_t>();
      if (out.size() <= i) out.resize(i + 1);
      if (choice["delta"].contains("content") && choice["delta"]["content"].is_string())
        out[i] += choice["delta"]["content"].get<std::string>();
      ++count;
    }
  }
  if (chunks) *chunks = count;
  return out;
}

// Waits until the fake has received `count` calls (they may still be in progress).
void wait_for_calls(FakeUpstream& fake, int count) {
  for (int i = 0; i < 1000 && calls(fake) < count; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(calls(fake) >= count);
}

std::string build_chat(const std::string& ns, int n, Headers headers = {}, const std::string& content = "Tell me a story",
                       bool stream = false) {
  headers.emplace_back("X-Reprise-Namespace", ns);
  return build_request("POST", "/v1/chat/completions", chat_body(content, n, stream).dump(), headers);
}

}  // namespace

TEST_CASE("cache: the paper's example: namespaces share one list, each with its own cursor") {
  Stack s;
  s.fake.control({{"latency_ms", 300}});
  // A asks n=3; while that call is in flight B asks n=2: B joins it.
  Conn a(s.proxy.port()), b(s.proxy.port());
  a.send(build_chat("A", 3));
  wait_for_calls(s.fake, 1);
  b.send(build_chat("B", 2));
  auto ra = read_response(a, std::chrono::seconds(10));
  auto rb = read_response(b, std::chrono::seconds(10));
  REQUIRE(ra.status == 200);
  REQUIRE(rb.status == 200);
  CHECK(calls(s.fake) == 1);
  CHECK(s.fake.stats()["last_request"]["body"]["n"] == 3);
  CHECK(ra.header("X-Reprise-Samples") == "0-2");
  CHECK(ra.header("X-Reprise-Cache") == "miss");
  CHECK(rb.header("X-Reprise-Samples") == "0-1");
  auto sa = contents(ra), sb = contents(rb);
  REQUIRE(sa.size() == 3);
  REQUIRE(sb.size() == 2);
  CHECK(sb[0] == sa[0]);
  CHECK(sb[1] == sa[1]);
  CHECK(std::set<std::string>(sa.begin(), sa.end()).size() == 3);

  // C asks n=4: three exist, one call with n=1 makes the fourth.
  s.fake.control({{"latency_ms", 0}});
  auto rc = chat(s.proxy.port(), "C", 4);
  REQUIRE(rc.status == 200);
  CHECK(calls(s.fake) == 2);
  CHECK_FALSE(s.fake.stats()["last_request"]["body"].contains("n"));  // n = 1
  CHECK(rc.header("X-Reprise-Cache") == "partial");
  CHECK(rc.header("X-Reprise-Samples") == "0-3");
  auto sc = contents(rc);
  REQUIRE(sc.size() == 4);
  CHECK(std::vector<std::string>(sc.begin(), sc.begin() + 3) == sa);

  // A asks n=1: it gets sample 3 (made for C), with no call.
  auto ra2 = chat(s.proxy.port(), "A", 1);
  REQUIRE(ra2.status == 200);
  CHECK(calls(s.fake) == 2);
  CHECK(ra2.header("X-Reprise-Cache") == "hit");
  CHECK(ra2.header("X-Reprise-Samples") == "3-3");
  CHECK(contents(ra2) == std::vector<std::string>{sc[3]});
  // usage: the hit reports the sample's own tokens, the prompt once.
  auto usage = ra2.json()["usage"];
  CHECK(usage["prompt_tokens"].get<int>() > 0);
  CHECK(usage["total_tokens"] == usage["prompt_tokens"].get<int>() + usage["completion_tokens"].get<int>());
  CHECK(usage["completion_tokens"].get<int>() > 0);
}

TEST_CASE("cache: no sample repeats within a namespace - a fresh one replays - a restart continues") {
  TempDir dir;
  FakeUpstream fake(dir);
  ProxyConfig config;
  std::optional<ProxyUnderTest> proxy;
  proxy.emplace(dir, config.render(dir, fake.base_url()), std::map<std::string, std::string>{}, "first");

  std::mt19937 rng(7);
  std::vector<int> ns_sizes;
  std::vector<std::string> served;
  uint64_t next = 0;
  Conn conn(proxy->port());
  for (int i = 0; i < 1000; ++i) {
    int n = 1 + int(rng() % 3);
    ns_sizes.push_back(n);
    conn.send(build_request("POST", "/v1/chat/completions", chat_body("Tell me a story", n).dump(),
                            {{"X-Reprise-Namespace", "run1"}}, /*keep_alive=*/true));
    auto r = read_response(conn, std::chrono::seconds(10));
    REQUIRE(r.status == 200);
    REQUIRE(r.header("X-Reprise-Samples") == std::to_string(next) + "-" + std::to_string(next + n - 1));
    next += n;
    for (auto& c : contents(r)) served.push_back(c);
  }
  // The fake draws 4..24 words from 64: a repeat would be a sample served twice.
  CHECK(std::set<std::string>(served.begin(), served.end()).size() == served.size());
  const int generated = calls(fake);

  // A fresh namespace replays exactly, with no upstream call.
  std::vector<std::string> replayed;
  for (int n : ns_sizes) {
    conn.send(build_request("POST", "/v1/chat/completions", chat_body("Tell me a story", n).dump(),
                            {{"X-Reprise-Namespace", "run2"}}, true));
    auto r = read_response(conn, std::chrono::seconds(10));
    REQUIRE(r.status == 200);
    CHECK(r.header("X-Reprise-Cache") == "hit");
    for (auto& c : contents(r)) replayed.push_back(c);
  }
  CHECK(replayed == served);
  CHECK(calls(fake) == generated);

  // After a restart both cursors continue where they stood.
  proxy->process().signal(SIGTERM);
  REQUIRE(proxy->process().wait_exit(std::chrono::seconds(10)) == 0);
  proxy.emplace(dir, config.render(dir, fake.base_url()), std::map<std::string, std::string>{}, "second");
  auto r1 = chat(proxy->port(), "run1", 2);
  REQUIRE(r1.status == 200);
  CHECK(r1.header("X-Reprise-Samples") == std::to_string(next) + "-" + std::to_string(next + 1));
  CHECK(r1.header("X-Reprise-Cache") == "miss");
  auto r2 = chat(proxy->port(), "run2", 2);
  CHECK(r2.header("X-Reprise-Samples") == std::to_string(next) + "-" + std::to_string(next + 1));
  CHECK(r2.header("X-Reprise-Cache") == "hit");
  CHECK(contents(r2) == contents(r1));
  for (auto& c : contents(r1)) CHECK(std::find(served.begin(), served.end(), c) == served.end());
}

namespace {

// Sends `count` identical requests, each with its id, over their own connections in
// a random order, and returns id -> (samples header, content).
std::map<std::string, std::pair<std::string, std::string>> burst(uint16_t port, const std::string& ns, int count,
                                                                 unsigned seed, const std::string& key = "") {
  std::vector<int> order(count);
  for (int i = 0; i < count; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(seed));
  std::vector<std::unique_ptr<Conn>> conns;
  for (int i = 0; i < count; ++i) conns.push_back(std::make_unique<Conn>(port));
  for (int i = 0; i < count; ++i) {
    Headers headers{{"X-Reprise-Request-Id", "req" + std::to_string(order[i])}};
    if (!key.empty()) headers.emplace_back("Authorization", "Bearer " + key);
    conns[i]->send(build_chat(ns, 1, headers));
  }
  std::map<std::string, std::pair<std::string, std::string>> out;
  for (int i = 0; i < count; ++i) {
    auto r = read_response(*conns[i], std::chrono::seconds(30));
    REQUIRE(r.status == 200);
    out["req" + std::to_string(order[i])] = {r.header("X-Reprise-Samples"), contents(r).at(0)};
  }
  return out;
}

}  // namespace

TEST_CASE("cache: 500 concurrent identical requests make one generation, assigned by request id") {
  ProxyConfig config;
  // All 500 must land in one batch: a window long enough for a loaded CI machine.
  config.tail = "\n[pipeline]\nbatch_window_ms = 1500\nbatch_max = 1000\n";
  Stack s(config);
  auto first = burst(s.proxy.port(), "run1", 500, 1);
  // One generation of n = 500, split into calls of max_n = 128: 128+128+128+116.
  CHECK(calls(s.fake) == 4);
  CHECK(s.fake.stats()["samples"] == 500);
  std::set<std::string> distinct;
  for (auto& [id, served] : first) distinct.insert(served.second);
  CHECK(distinct.size() == 500);
  // natural order of the ids: req0 gets sample 0, req10 sample 10, req499 sample 499.
  CHECK(first["req0"].first == "0-0");
  CHECK(first["req10"].first == "10-10");
  CHECK(first["req499"].first == "499-499");

  // Two more runs in fresh namespaces, other arrival orders: the same assignment.
  CHECK(burst(s.proxy.port(), "run2", 500, 2) == first);
  CHECK(burst(s.proxy.port(), "run3", 500, 3) == first);
  CHECK(calls(s.fake) == 4);
}

TEST_CASE("cache: tenants never share samples or generations") {
  ProxyConfig config;
  config.tail = "\n[pipeline]\nbatch_window_ms = 1500\nbatch_max = 1000\n";
  Stack s(config);
  auto a = burst(s.proxy.port(), "default", 250, 1, "sk-tenant-a-0123456789");
  auto b = burst(s.proxy.port(), "default", 250, 2, "sk-tenant-b-0123456789");
  CHECK(calls(s.fake) == 4);  // 128 + 122 for each tenant
  std::set<std::string> from_a, from_b;
  for (auto& [id, served] : a) from_a.insert(served.second);
  for (auto& [id, served] : b) from_b.insert(served.second);
  CHECK(from_a.size() == 250);
  CHECK(from_b.size() == 250);
  for (auto& text : from_a) CHECK(from_b.count(text) == 0);
  // Both started their own list at 0.
  CHECK(a["req0"].first == "0-0");
  CHECK(b["req0"].first == "0-0");
}

TEST_CASE("cache: deficit only: a generation in flight is joined, only the missing sample is asked for") {
  Stack s;
  s.fake.control({{"latency_ms", 400}});
  Conn a(s.proxy.port()), b(s.proxy.port());
  a.send(build_chat("A", 3));
  wait_for_calls(s.fake, 1);
  b.send(build_chat("B", 4));
  auto ra = read_response(a, std::chrono::seconds(10));
  auto rb = read_response(b, std::chrono::seconds(10));
  REQUIRE(ra.status == 200);
  REQUIRE(rb.status == 200);
  CHECK(calls(s.fake) == 2);
  CHECK_FALSE(s.fake.stats()["last_request"]["body"].contains("n"));  // the extra call has n = 1
  CHECK(rb.header("X-Reprise-Samples") == "0-3");
  auto sa = contents(ra), sb = contents(rb);
  REQUIRE(sb.size() == 4);
  CHECK(std::vector<std::string>(sb.begin(), sb.begin() + 3) == sa);
}

TEST_CASE("cache: errors, cut streams and timeouts are never stored") {
  ProxyConfig config;
  config.upstream = "max_retries = 0\nread_idle_timeout_ms = 300\n";
  Stack s(config);

  s.fake.control({{"fail_next", 1}, {"fail_status", 500}});
  auto failed = chat(s.proxy.port(), "ns", 1);
  CHECK(failed.status == 500);
  CHECK(failed.json()["error"].is_object());
  auto ok = chat(s.proxy.port(), "ns", 1);
  REQUIRE(ok.status == 200);
  CHECK(ok.header("X-Reprise-Cache") == "miss");
  CHECK(ok.header("X-Reprise-Samples") == "0-0");  // the failure consumed nothing

  // A stream cut midway: the client sees it cut, and nothing is stored.
  const std::string prompt = "A streamed prompt";
  s.fake.control({{"reset_after_chunks", 3}});
  auto cut = chat(s.proxy.port(), "ns", 2, {}, prompt, true);
  bool done = true;
  stream_contents(cut, nullptr, &done);
  CHECK_FALSE(done);
  // A stream that stalls past the read-idle timeout.
  s.fake.control({{"reset_after_chunks", 0}, {"stall_after_chunks", 3}});
  auto stalled = chat(s.proxy.port(), "ns", 2, {}, prompt, true);
  stream_contents(stalled, nullptr, &done);
  CHECK_FALSE(done);
  // Malformed JSON from the upstream.
  s.fake.control({{"stall_after_chunks", 0}, {"malformed", true}});
  auto malformed = chat(s.proxy.port(), "ns", 2, {}, prompt);
  CHECK(malformed.status == 502);
  s.fake.control({{"malformed", false}});

  const int before = calls(s.fake);
  auto fresh = chat(s.proxy.port(), "ns", 2, {}, prompt);
  REQUIRE(fresh.status == 200);
  CHECK(fresh.header("X-Reprise-Cache") == "miss");
  CHECK(fresh.header("X-Reprise-Samples") == "0-1");
  CHECK(calls(s.fake) == before + 1);
}

TEST_CASE("cache: streams and JSON answers come from the same samples") {
  Stack s;
  // A streamed miss stores samples that a JSON request then reads...
  auto streamed = chat(s.proxy.port(), "A", 2, {}, "Stream first", true);
  REQUIRE(streamed.status == 200);
  CHECK(streamed.header("Content-Type").starts_with("text/event-stream"));
  bool done = false;
  auto live = stream_contents(streamed, nullptr, &done);
  CHECK(done);
  auto json_hit = chat(s.proxy.port(), "B", 2, {}, "Stream first");
  CHECK(json_hit.header("X-Reprise-Cache") == "hit");
  CHECK(contents(json_hit) == live);

  // ...and a JSON miss is replayed as a stream, in token-sized chunks, with usage.
  auto made = chat(s.proxy.port(), "A", 1, {}, "JSON first");
  auto body = chat_body("JSON first", 1, true);
  body["stream_options"] = {{"include_usage", true}};
  auto replay = post_json(s.proxy.port(), "/v1/chat/completions", body, {{"X-Reprise-Namespace", "B"}});
  REQUIRE(replay.status == 200);
  CHECK(replay.header("X-Reprise-Cache") == "hit");
  size_t chunks = 0;
  auto replayed = stream_contents(replay, &chunks, &done);
  CHECK(done);
  CHECK(replayed == contents(made));
  CHECK(chunks >= 4);  // role, at least two words, finish
  auto events = sse_events(replay.body);
  REQUIRE_FALSE(events.empty());
  CHECK(events.back()["choices"].empty());
  CHECK(events.back()["usage"] == made.json()["usage"]);
  CHECK(calls(s.fake) == 2);
}

TEST_CASE("cache: merged streaming requests each receive their own choices live") {
  ProxyConfig config;
  config.tail = "\n[pipeline]\nbatch_window_ms = 1000\n";
  Stack s(config);
  s.fake.control({{"chunk_delay_ms", 2}});
  Conn a(s.proxy.port()), b(s.proxy.port());
  a.send(build_chat("A", 2, {{"X-Reprise-Request-Id", "a"}}, "Merged", true));
  b.send(build_chat("A", 1, {{"X-Reprise-Request-Id", "b"}}, "Merged", true));
  auto ra = read_response(a, std::chrono::seconds(10));
  auto rb = read_response(b, std::chrono::seconds(10));
  CHECK(calls(s.fake) == 1);
  CHECK(s.fake.stats()["last_request"]["body"]["n"] == 3);
  CHECK(ra.header("X-Reprise-Samples") == "0-1");
  CHECK(rb.header("X-Reprise-Samples") == "2-2");
  bool done_a = false, done_b = false;
  auto sa = stream_contents(ra, nullptr, &done_a);
  auto sb = stream_contents(rb, nullptr, &done_b);
  CHECK(done_a);
  CHECK(done_b);
  REQUIRE(sa.size() == 2);
  REQUIRE(sb.size() == 1);  // only its own choice, re-indexed to 0
  auto all = contents(chat(s.proxy.port(), "B", 3, {}, "Merged"));
  CHECK(all == std::vector<std::string>{sa[0], sa[1], sb[0]});
}

TEST_CASE("cache: greedy reuse, explicit indices, only-cached and bypass") {
  Stack s;
  json greedy = chat_body("Greedy", 1);
  greedy["temperature"] = 0;
  auto g1 = post_json(s.proxy.port(), "/v1/chat/completions", greedy, {{"X-Reprise-Namespace", "A"}});
  auto g2 = post_json(s.proxy.port(), "/v1/chat/completions", greedy, {{"X-Reprise-Namespace", "A"}});
  greedy["n"] = 2;
  auto g3 = post_json(s.proxy.port(), "/v1/chat/completions", greedy, {{"X-Reprise-Namespace", "B"}});
  CHECK(calls(s.fake) == 1);
  CHECK(g1.header("X-Reprise-Samples") == "0-0");
  CHECK(g2.header("X-Reprise-Samples") == "0-0");
  CHECK(g2.header("X-Reprise-Cache") == "hit");
  CHECK(contents(g2) == contents(g1));
  CHECK(contents(g3) == std::vector<std::string>{contents(g1)[0], contents(g1)[0]});

  // X-Reprise-Sample: exactly those indices, generating what is missing, cursor untouched.
  auto e = chat(s.proxy.port(), "C", 1, {{"X-Reprise-Sample", "2-3"}}, "Explicit");
  REQUIRE(e.status == 200);
  CHECK(e.header("X-Reprise-Samples") == "2-3");
  CHECK(contents(e).size() == 2);
  CHECK(s.fake.stats()["last_request"]["body"]["n"] == 4);  // indices 0-3 made
  auto c = chat(s.proxy.port(), "C", 4, {}, "Explicit");
  CHECK(c.header("X-Reprise-Samples") == "0-3");  // C's cursor was still at 0
  CHECK(c.header("X-Reprise-Cache") == "hit");
  auto from_c = contents(c);
  CHECK(std::vector<std::string>(from_c.begin() + 2, from_c.end()) == contents(e));
  CHECK(chat(s.proxy.port(), "C", 1, {{"X-Reprise-Sample", "x"}}, "Explicit").status == 400);

  // only-cached: a 504 when not stored, and the cursor does not move.
  const int before = calls(s.fake);
  auto miss = chat(s.proxy.port(), "D", 5, {{"X-Reprise-Cache", "only-cached"}}, "Explicit");
  CHECK(miss.status == 504);
  CHECK(miss.json()["error"]["code"] == "not_cached");
  auto hit = chat(s.proxy.port(), "D", 4, {{"X-Reprise-Cache", "only-cached"}}, "Explicit");
  CHECK(hit.status == 200);
  CHECK(hit.header("X-Reprise-Samples") == "0-3");
  CHECK(calls(s.fake) == before);

  // bypass: relayed each time, nothing stored or read.
  auto p1 = chat(s.proxy.port(), "E", 1, {{"X-Reprise-Cache", "bypass"}}, "Explicit");
  CHECK(p1.header("X-Reprise-Cache") == "bypass");
  CHECK(calls(s.fake) == before + 1);
}

TEST_CASE("cache: embeddings are one deterministic sample, served as float or base64") {
  Stack s;
  json body = {{"model", "text-embedding-3-small"}, {"input", {"one", "two"}}};
  auto floats = post_json(s.proxy.port(), "/v1/embeddings", body, {{"X-Reprise-Namespace", "A"}});
  REQUIRE(floats.status == 200);
  CHECK(floats.header("X-Reprise-Cache") == "miss");
  body["encoding_format"] = "base64";
  auto b64 = post_json(s.proxy.port(), "/v1/embeddings", body, {{"X-Reprise-Namespace", "A"}});
  REQUIRE(b64.status == 200);
  CHECK(b64.header("X-Reprise-Cache") == "hit");  // same key: encoding_format is not in it
  CHECK(b64.header("X-Reprise-Samples") == "0-0");
  CHECK(calls(s.fake) == 1);
  auto f = floats.json(), b = b64.json();
  REQUIRE(f["data"].size() == 2);
  REQUIRE(b["data"].size() == 2);
  CHECK(f["data"][1]["index"] == 1);
  CHECK(f["data"][0]["embedding"].is_array());
  CHECK(b["data"][0]["embedding"].is_string());
  CHECK(b["usage"] == f["usage"]);
  // base64 of little-endian float32: 4 bytes a dimension, the same values.
  std::string decoded;
  {
    std::string text = b["data"][0]["embedding"].get<std::string>();
    decoded.resize(text.size() / 4 * 3);
    int len = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                              reinterpret_cast<const unsigned char*>(text.data()), int(text.size()));
    REQUIRE(len > 0);
    decoded.resize(size_t(len) - (text.ends_with("==") ? 2 : text.ends_with("=") ? 1 : 0));
  }
  REQUIRE(decoded.size() == f["data"][0]["embedding"].size() * 4);
  for (size_t i = 0; i < f["data"][0]["embedding"].size(); ++i) {
    float value;
    std::memcpy(&value, decoded.data() + i * 4, 4);
    CHECK(value == doctest::Approx(f["data"][0]["embedding"][i].get<double>()).epsilon(1e-6));
  }
}

TEST_CASE("cache: bad requests are refused before the cache, and a reset namespace replays") {
  Stack s;
  auto dup = request(s.proxy.port(), "POST", "/v1/chat/completions",
                     R"({"model":"gpt-4o-mini","model":"x","messages":[]})");
  CHECK(dup.status == 400);
  CHECK(dup.json()["error"]["param"] == "model");
  CHECK(calls(s.fake) == 0);

  auto first = chat(s.proxy.port(), "R", 2);
  auto second = chat(s.proxy.port(), "R", 1);
  CHECK(second.header("X-Reprise-Samples") == "2-2");
  auto reset = request(s.proxy.admin_port(), "POST", "/admin/namespaces/R/reset");
  REQUIRE(reset.status == 200);
  CHECK(reset.json()["reset"] == true);
  auto again = chat(s.proxy.port(), "R", 2);
  CHECK(again.header("X-Reprise-Samples") == "0-1");
  CHECK(again.header("X-Reprise-Cache") == "hit");
  CHECK(contents(again) == contents(first));
  CHECK(request(s.proxy.admin_port(), "GET", "/admin/namespaces/R/reset").status == 405);
}

TEST_CASE("cache: max_n splits a deficit into calls the upstream accepts (max_n = 1: an API without n)") {
  ProxyConfig config;
  config.upstream = "max_n = 1\n";
  Stack s(config);
  auto r = chat(s.proxy.port(), "A", 3);
  REQUIRE(r.status == 200);
  CHECK(r.header("X-Reprise-Samples") == "0-2");
  CHECK(calls(s.fake) == 3);
  CHECK_FALSE(s.fake.stats()["last_request"]["body"].contains("n"));
  auto sa = contents(r);
  CHECK(std::set<std::string>(sa.begin(), sa.end()).size() == 3);
  // A stream made of three n = 1 calls, each relayed live to the one client.
  bool done = false;
  auto streamed = stream_contents(chat(s.proxy.port(), "A", 3, {}, "Streamed in parts", true), nullptr, &done);
  CHECK(done);
  CHECK(streamed.size() == 3);
  CHECK(calls(s.fake) == 6);
  CHECK(contents(chat(s.proxy.port(), "B", 3, {}, "Streamed in parts")) == streamed);
}
