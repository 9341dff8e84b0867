// End to end through the real binary: what clients of the cache see of an upstream's
// refusals, and what reaches the upstream from them: streamed errors with their own
// status, every credential header and a `key` query parameter naming a tenant, the
// target's query string (Azure's api-version) in the key and upstream, best_of relayed.
#include <doctest/doctest.h>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

namespace {

Response chat(uint16_t port, const std::string& ns, int n, Headers headers = {}, bool stream = false,
              const std::string& target = "/v1/chat/completions", const std::string& content = "Tell me a story") {
  headers.emplace_back("X-Reprise-Namespace", ns);
  return post_json(port, target, chat_body(content, n, stream), headers);
}

// The content of every choice of a JSON answer, or of a stream's deltas, joined.
std::string text_of(const Response& r) {
  std::string out;
  if (r.header("Content-Type").starts_with("text/event-stream")) {
    for (auto& event : sse_events(r.body))
      for (auto& choice : event["choices"])
        if (choice["delta"].contains("content") && choice["delta"]["content"].is_string())
          out += choice["delta"]["content"].get<std::string>();
    return out;
  }
  const json body = r.json();
  for (auto& choice : body["choices"]) out += choice["message"]["content"].get<std::string>() + "|";
  return out;
}

json last_request(FakeUpstream& fake) { return fake.stats()["last_request"]; }

}  // namespace

TEST_CASE("streams: a miss the upstream refuses before any content gets the upstream's status and headers") {
  ProxyConfig config;
  config.upstream = "max_retries = 0\n";  // the client, not the proxy, decides about retrying
  Stack s(config);
  struct Case {
    int status;
    const char* type;
  };
  for (auto [status, type] : {Case{429, "rate_limit_error"}, Case{400, "invalid_request_error"},
                              Case{401, "invalid_request_error"}}) {
    CAPTURE(status);
    s.fake.control({{"fail_next", 1}, {"fail_status", status}, {"retry_after", "7"}});
    auto r = chat(s.proxy.port(), "refused-" + std::to_string(status), 1, {}, true);
    CHECK(r.status == status);
    CHECK(r.complete);
    CHECK(r.header("Content-Type") == "application/json");
    CHECK(r.header("Retry-After") == "7");
    CHECK(r.header("x-request-id").starts_with("req_fake_"));  // the upstream's own headers
    CHECK(r.header("X-Reprise-Cache") == "miss");
    auto error = json::parse(r.body, nullptr, false);
    REQUIRE(error.is_object());
    REQUIRE(error["error"].is_object());
    CHECK(error["error"]["type"] == type);
    CHECK(error["error"]["message"].is_string());
  }
  s.fake.control({{"retry_after", nullptr}});

  // Nothing was stored or consumed: the same request streams its miss, then a hit.
  auto miss = chat(s.proxy.port(), "refused-429", 1, {}, true);
  REQUIRE(miss.status == 200);
  CHECK(miss.header("Content-Type").starts_with("text/event-stream"));
  CHECK(miss.header("X-Reprise-Samples") == "0-0");
  bool done = false;
  sse_events(miss.body, &done);
  CHECK(done);
  auto hit = chat(s.proxy.port(), "another", 1, {}, true);
  REQUIRE(hit.status == 200);
  CHECK(hit.header("X-Reprise-Cache") == "hit");
  CHECK(hit.header("Content-Type").starts_with("text/event-stream"));
  sse_events(hit.body, &done);
  CHECK(done);
  CHECK(text_of(hit) == text_of(miss));
}

TEST_CASE("streams: once content was written, a failure still ends the stream with an error event") {
  ProxyConfig config;
  config.upstream = "max_retries = 0\n";
  Stack s(config);
  // Cut midway by the upstream, after the first events reached the client.
  s.fake.control({{"reset_after_chunks", 3}, {"min_words", 20}, {"max_words", 20}});
  auto cut = chat(s.proxy.port(), "cut", 1, {}, true);
  CHECK(cut.status == 200);
  CHECK_FALSE(cut.complete);
  bool done = true;
  auto events = sse_events(cut.body, &done);
  CHECK_FALSE(done);
  REQUIRE_FALSE(events.empty());
  CHECK(events.back().contains("error"));
  CHECK(events.front().contains("choices"));
  s.fake.control({{"reset_after_chunks", -1}});

  // A stored sample is content too: it is sent, then the generation of the next one
  // fails, and the client hears of it in the stream.
  auto first = chat(s.proxy.port(), "reader", 1, {}, false, "/v1/chat/completions", "Partial");
  REQUIRE(first.status == 200);
  s.fake.control({{"fail_next", 1}, {"fail_status", 429}});
  auto partial = chat(s.proxy.port(), "partial", 2, {}, true, "/v1/chat/completions", "Partial");
  CHECK(partial.status == 200);
  CHECK(partial.header("X-Reprise-Cache") == "partial");
  CHECK_FALSE(partial.complete);
  events = sse_events(partial.body, &done);
  CHECK_FALSE(done);
  REQUIRE_FALSE(events.empty());
  CHECK(events.back()["error"]["type"] == "rate_limit_error");
}

TEST_CASE("tenants: api-key and x-api-key clients are tenants of their own, and their keys reach the upstream") {
  Stack s;  // the upstream has a configured key, for clients that send none
  for (std::string header : {"api-key", "x-api-key"}) {
    CAPTURE(header);
    const std::string ns = "ns-" + header, target = "/v1/chat/completions", prompt = "About " + header;
    auto a = chat(s.proxy.port(), ns, 1, {{header, "client-a-key-0123456789"}}, false, target, prompt);
    REQUIRE(a.status == 200);
    CHECK(a.header("X-Reprise-Cache") == "miss");
    CHECK(a.header("X-Reprise-Samples") == "0-0");
    auto seen = last_request(s.fake)["headers"];
    CHECK(seen[header] == "client-a-key-0123456789");
    CHECK_FALSE(seen.contains("authorization"));  // no configured key added for it

    // Another key: its own list (index 0 again, not the next of a shared one).
    auto b = chat(s.proxy.port(), ns, 1, {{header, "client-b-key-0123456789"}}, false, target, prompt);
    REQUIRE(b.status == 200);
    CHECK(b.header("X-Reprise-Cache") == "miss");
    CHECK(b.header("X-Reprise-Samples") == "0-0");
    CHECK(text_of(b) != text_of(a));
    seen = last_request(s.fake)["headers"];
    CHECK(seen[header] == "client-b-key-0123456789");
    CHECK_FALSE(seen.contains("authorization"));

    // Neither is the no-key tenant, and each still finds its own samples.
    auto keyless = chat(s.proxy.port(), ns, 1, {}, false, target, prompt);
    CHECK(keyless.header("X-Reprise-Samples") == "0-0");
    CHECK(keyless.header("X-Reprise-Cache") == "miss");
    CHECK(last_request(s.fake)["headers"]["authorization"] == "Bearer sk-test-configured-key-0123456789");
    auto a_again = chat(s.proxy.port(), ns + "-replay", 1, {{header, "client-a-key-0123456789"}}, false, target, prompt);
    CHECK(a_again.header("X-Reprise-Cache") == "hit");
    CHECK(text_of(a_again) == text_of(a));
  }
  auto log = s.proxy.log();
  CHECK(log.find("client-a-key") == std::string::npos);
  CHECK(log.find("client-b-key") == std::string::npos);
}

TEST_CASE("query strings: api-version is part of the key and reaches the upstream; best_of is relayed uncached") {
  Stack s;
  const std::string target_a = "/v1/chat/completions?api-version=2024-10-21";
  const std::string target_b = "/v1/chat/completions?api-version=2025-01-01";
  auto a = chat(s.proxy.port(), "q", 1, {}, false, target_a);
  REQUIRE(a.status == 200);
  CHECK(a.header("X-Reprise-Samples") == "0-0");
  CHECK(last_request(s.fake)["target"] == target_a);
  auto b = chat(s.proxy.port(), "q", 1, {}, false, target_b);
  REQUIRE(b.status == 200);
  CHECK(b.header("X-Reprise-Cache") == "miss");
  CHECK(b.header("X-Reprise-Samples") == "0-0");  // its own list
  CHECK(last_request(s.fake)["target"] == target_b);
  CHECK(text_of(a) != text_of(b));
  // The same version replays from its own list.
  auto a_again = chat(s.proxy.port(), "q-replay", 1, {}, false, target_a);
  CHECK(a_again.header("X-Reprise-Cache") == "hit");
  CHECK(text_of(a_again) == text_of(a));
  // Streamed too: the query goes upstream on a streamed miss.
  auto streamed = chat(s.proxy.port(), "q", 1, {}, true, "/v1/chat/completions?api-version=3");
  CHECK(streamed.header("X-Reprise-Cache") == "miss");
  CHECK(last_request(s.fake)["target"] == "/v1/chat/completions?api-version=3");

  // A key in the query is a credential: it names the tenant and goes upstream as sent.
  auto k1 = chat(s.proxy.port(), "qk", 1, {}, false, target_a + "&key=query-key-one");
  auto k2 = chat(s.proxy.port(), "qk", 1, {}, false, target_a + "&key=query-key-two");
  CHECK(k1.header("X-Reprise-Samples") == "0-0");
  CHECK(k2.header("X-Reprise-Samples") == "0-0");
  CHECK(k1.header("X-Reprise-Cache") == "miss");
  CHECK(k2.header("X-Reprise-Cache") == "miss");
  CHECK(last_request(s.fake)["target"] == target_a + "&key=query-key-two");
  CHECK_FALSE(last_request(s.fake)["headers"].contains("authorization"));

  // best_of picks the best n of its draws upstream: relayed as sent, never cached.
  json body = {{"model", "gpt-3.5-turbo-instruct"}, {"prompt", "Say hi"}, {"best_of", 3}, {"n", 2}};
  for (int i = 0; i < 2; ++i) {
    auto r = post_json(s.proxy.port(), "/v1/completions", body);
    REQUIRE(r.status == 200);
    CHECK(r.header("X-Reprise-Cache") == "bypass");
    CHECK(last_request(s.fake)["body"]["best_of"] == 3);
    CHECK(last_request(s.fake)["body"]["n"] == 2);
  }
}
