// End to end through the real binary: the invariants of DESIGN.md section 1 where an
// upstream failure meets requests in flight (I1 no repeat, I2 stable indices) and
// where a client asks for unbounded work (I4). Each failure is forced by the fake
// upstream's knobs: latency holds a call in flight, fail_next makes it fail (with a
// 400, which the upstream client does not retry).
#include <doctest/doctest.h>

#include <optional>
#include <set>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

namespace {

int calls(FakeUpstream& fake) { return fake.stats()["calls"].get<int>(); }

void wait_for_calls(FakeUpstream& fake, int count) {
  for (int i = 0; i < 1000 && calls(fake) < count; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(calls(fake) >= count);
}

std::string chat_request(const std::string& ns, int n, Headers headers = {}, bool stream = false) {
  headers.emplace_back("X-Reprise-Namespace", ns);
  return build_request("POST", "/v1/chat/completions", chat_body("Tell me a story", n, stream).dump(), headers);
}

std::vector<std::string> contents(const Response& r) {
  const json body = r.json();  // kept: a loop over r.json()["choices"] would outlive it
  std::vector<std::string> out;
  for (auto& choice : body["choices"]) out.push_back(choice["message"]["content"].get<std::string>());
  return out;
}

// The streamed contents per choice index.
std::vector<std::string> stream_contents(const Response& r) {
  std::vector<std::string> out;
  for (auto& event : sse_events(r.body, nullptr))
    for (auto& choice : event["choices"]) {
      size_t i = choice["index"].get<size_t>();
      if (out.size() <= i) out.resize(i + 1);
      if (choice["delta"].contains("content") && choice["delta"]["content"].is_string())
        out[i] += choice["delta"]["content"].get<std::string>();
    }
  return out;
}

Response ask(uint16_t port, const std::string& ns, int n, Headers headers = {}) {
  Conn conn(port);
  conn.send(chat_request(ns, n, std::move(headers)));
  return read_response(conn, std::chrono::seconds(10));
}

}  // namespace

TEST_CASE("invariants: X-Reprise-Sample far past the list is a 400 that generates nothing (I4)") {
  Stack s;
  for (const char* k : {"100000", "999999999999999", "129", "5-130"}) {
    CAPTURE(k);
    auto r = ask(s.proxy.port(), "a", 1, {{"X-Reprise-Sample", k}});
    CHECK(r.status == 400);
    CHECK(r.json()["error"]["param"] == "X-Reprise-Sample");
    CHECK(calls(s.fake) == 0);
  }
  // Within the bound ([cache] max_new_samples, 128 by default) it is served: indices
  // 0-127 made in one call with n = 128, the last one given back.
  auto r = ask(s.proxy.port(), "a", 1, {{"X-Reprise-Sample", "127"}});
  REQUIRE(r.status == 200);
  CHECK(r.header("X-Reprise-Samples") == "127-127");
  CHECK(calls(s.fake) == 1);
  CHECK(s.fake.stats()["last_request"]["body"]["n"] == 128);
  // Past what is now stored, the bound counts from the end of the list.
  auto r2 = ask(s.proxy.port(), "a", 1, {{"X-Reprise-Sample", "200"}});
  CHECK(r2.status == 200);
  CHECK(calls(s.fake) == 2);
  // The proxy is alive and the key is not wedged.
  auto r3 = ask(s.proxy.port(), "b", 2);
  CHECK(r3.status == 200);
  CHECK(r3.header("X-Reprise-Samples") == "0-1");
}

TEST_CASE("invariants: an index a client was told never moves when an earlier generation fails (I2)") {
  Stack s;
  // Call 1 (index 0, for namespace a) will fail after 400 ms; call 2 (index 1, for
  // X-Reprise-Sample: 1) starts while call 1 is in flight and succeeds.
  s.fake.control({{"latency_ms", 400}, {"fail_next", 1}, {"fail_status", 400}});
  Conn a(s.proxy.port()), b(s.proxy.port());
  a.send(chat_request("a", 1));
  wait_for_calls(s.fake, 1);
  b.send(chat_request("b", 1, {{"X-Reprise-Sample", "1"}}));
  wait_for_calls(s.fake, 2);
  auto ra = read_response(a, std::chrono::seconds(10));
  auto rb = read_response(b, std::chrono::seconds(10));
  CHECK(ra.status == 400);
  REQUIRE(rb.status == 200);
  CHECK(rb.header("X-Reprise-Samples") == "1-1");
  const std::string told = contents(rb).at(0);

  // Index 1 holds what b was served, for everyone, forever; index 0 is made again.
  s.fake.control({{"latency_ms", 0}});
  auto again = ask(s.proxy.port(), "c", 1, {{"X-Reprise-Sample", "1"}});
  REQUIRE(again.status == 200);
  CHECK(contents(again).at(0) == told);
  auto zero = ask(s.proxy.port(), "c", 1, {{"X-Reprise-Sample", "0"}});
  REQUIRE(zero.status == 200);
  CHECK(contents(zero).at(0) != told);
  // A fresh namespace reads the list in order: 0 then 1.
  auto fresh = ask(s.proxy.port(), "fresh", 2);
  REQUIRE(fresh.status == 200);
  CHECK(contents(fresh) == std::vector<std::string>{contents(zero).at(0), told});
  // Namespace a's failed JSON request consumed nothing: it reads 0-1 as well.
  auto retry = ask(s.proxy.port(), "a", 2);
  REQUIRE(retry.status == 200);
  CHECK(retry.header("X-Reprise-Samples") == "0-1");
  CHECK(contents(retry) == contents(fresh));
}

TEST_CASE("invariants: a stored sample streamed in full before a failure is never served again (I1)") {
  TempDir dir;
  FakeUpstream fake(dir);
  ProxyConfig config;
  std::optional<ProxyUnderTest> proxy;
  proxy.emplace(dir, config.render(dir, fake.base_url()), std::map<std::string, std::string>{}, "first");

  // Index 0 is stored (namespace warm read it).
  auto warm = ask(proxy->port(), "warm", 1);
  REQUIRE(warm.status == 200);
  const std::string sample0 = contents(warm).at(0);

  // Namespace a streams n=2: index 0 from the store, index 1 from a call that fails
  // after 300 ms, long after sample 0 went out in full.
  fake.control({{"latency_ms", 300}, {"fail_next", 1}, {"fail_status", 400}});
  Conn conn(proxy->port());
  conn.send(chat_request("a", 2, {}, /*stream=*/true));
  auto streamed = read_response(conn, std::chrono::seconds(10));
  auto got = stream_contents(streamed);
  REQUIRE(got.size() >= 1);
  CHECK(got[0] == sample0);  // received in full
  fake.control({{"latency_ms", 0}});

  // After a restart, namespace a goes on after sample 0: it was served.
  proxy->process().signal(SIGTERM);
  REQUIRE(proxy->process().wait_exit(std::chrono::seconds(10)) == 0);
  proxy.emplace(dir, config.render(dir, fake.base_url()), std::map<std::string, std::string>{}, "second");
  auto next = ask(proxy->port(), "a", 1);
  REQUIRE(next.status == 200);
  CHECK(next.header("X-Reprise-Samples") == "1-1");
  CHECK(contents(next).at(0) != sample0);
}

TEST_CASE("invariants: a failed JSON request consumes nothing: its retry reads what it would have read") {
  Stack s;
  REQUIRE(ask(s.proxy.port(), "warm", 1).status == 200);  // index 0 stored

  // Namespace a asks n=2 as JSON: 0 stored, 1 from a call that fails. The client
  // saw nothing.
  s.fake.control({{"fail_next", 1}, {"fail_status", 400}});
  CHECK(ask(s.proxy.port(), "a", 2).status == 400);

  // Its retry reads 0-1, as without the failure (and so after any restart).
  auto retry = ask(s.proxy.port(), "a", 2);
  REQUIRE(retry.status == 200);
  CHECK(retry.header("X-Reprise-Samples") == "0-1");
  CHECK(retry.header("X-Reprise-Cache") == "partial");
}
