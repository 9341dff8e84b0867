// End to end through the real binary: OpenAI requests relayed to the fake upstream.
#include <doctest/doctest.h>

#include <set>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;

TEST_CASE("bypass: chat completions are relayed, with the configured key and the re-serialised body") {
  Stack s;
  // Deliberately unsorted keys and an integer-valued float: the upstream must get
  // the body as the proxy parsed and re-serialised it.
  std::string raw = R"({"temperature":1.0,"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi there"}]})";
  auto r = request(s.proxy.port(), "POST", "/v1/chat/completions", raw,
                   {{"X-Stainless-Lang", "js"}, {"Keep-Alive", "timeout=5"}, {"X-Reprise-Cache", "bypass"}});
  REQUIRE(r.status == 200);
  CHECK(r.header("X-Reprise-Namespace") == "default");
  CHECK(r.header("X-Reprise-Cache") == "bypass");
  CHECK(r.header("x-request-id").starts_with("req_fake_"));
  auto j = r.json();
  CHECK(j["object"] == "chat.completion");
  REQUIRE(j["choices"].size() == 1);
  CHECK(j["choices"][0]["message"]["content"].get<std::string>().size() > 0);
  CHECK(j["usage"]["prompt_tokens"].get<int>() > 0);
  CHECK(j["usage"]["total_tokens"].get<int>() ==
        j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());

  auto stats = s.fake.stats();
  CHECK(stats["calls"] == 1);
  auto last = stats["last_request"];
  CHECK(last["target"] == "/v1/chat/completions");
  CHECK(last["headers"]["authorization"] == "Bearer sk-test-configured-key-0123456789");
  CHECK(last["headers"]["x-stainless-lang"] == "js");
  CHECK_FALSE(last["headers"].contains("keep-alive"));
  CHECK(last["headers"]["accept-encoding"] == "identity");
  CHECK(last["body"] == json::parse(raw));
  CHECK(last["body"].dump() == json::parse(raw).dump());  // sorted keys, as re-serialised
}

TEST_CASE("the client's Authorization is forwarded and no key ever reaches the log") {
  Stack s;
  auto r = post_json(s.proxy.port(), "/v1/chat/completions", chat_body(),
                     {{"Authorization", "Bearer sk-client-secret-abcdef123456"}});
  REQUIRE(r.status == 200);
  CHECK(s.fake.stats()["last_request"]["headers"]["authorization"] == "Bearer sk-client-secret-abcdef123456");
  // An upstream failure is logged too; neither key may appear anywhere in the log.
  s.fake.control({{"fail_next", 1}, {"fail_status", 400}});
  post_json(s.proxy.port(), "/v1/chat/completions", chat_body(), {{"Authorization", "Bearer sk-client-secret-abcdef123456"}});
  auto log = s.proxy.log();
  CHECK(log.find("POST /v1/chat/completions 200") != std::string::npos);
  CHECK(log.find("sk-client-secret") == std::string::npos);
  CHECK(log.find("sk-test-configured-key") == std::string::npos);
}

TEST_CASE("n > 1 returns n different choices") {
  Stack s;
  auto r = post_json(s.proxy.port(), "/v1/chat/completions", chat_body("Tell me", 4));
  REQUIRE(r.status == 200);
  auto choices = r.json()["choices"];
  REQUIRE(choices.size() == 4);
  std::set<std::string> texts;
  for (size_t i = 0; i < choices.size(); ++i) {
    CHECK(choices[i]["index"] == i);
    texts.insert(choices[i]["message"]["content"].get<std::string>());
  }
  CHECK(texts.size() == 4);
  CHECK(s.fake.stats()["samples"] == 4);
}

TEST_CASE("completions, embeddings and models") {
  Stack s;
  auto c = post_json(s.proxy.port(), "/v1/completions", {{"model", "gpt-4o-mini"}, {"prompt", "Once upon"}, {"max_tokens", 3}});
  REQUIRE(c.status == 200);
  CHECK(c.json()["object"] == "text_completion");
  CHECK(c.json()["choices"][0]["finish_reason"] == "length");
  CHECK(c.json()["usage"]["completion_tokens"] == 3);

  auto e = post_json(s.proxy.port(), "/v1/embeddings", {{"model", "text-embedding-3-small"}, {"input", {"a", "b"}}});
  REQUIRE(e.status == 200);
  CHECK(e.json()["data"].size() == 2);
  CHECK(e.json()["data"][0]["embedding"].size() == 64);
  auto b = post_json(s.proxy.port(), "/v1/embeddings",
                     {{"model", "text-embedding-3-small"}, {"input", "a"}, {"encoding_format", "base64"}});
  REQUIRE(b.status == 200);
  CHECK(b.json()["data"][0]["embedding"].is_string());

  auto list = request(s.proxy.port(), "GET", "/v1/models");
  REQUIRE(list.status == 200);
  CHECK(list.json()["object"] == "list");
  CHECK(list.json()["data"].size() >= 1);
  auto one = request(s.proxy.port(), "GET", "/v1/models/gpt-4o-mini");
  REQUIRE(one.status == 200);
  CHECK(one.json()["id"] == "gpt-4o-mini");
  auto missing = request(s.proxy.port(), "GET", "/v1/models/no-such-model");
  CHECK(missing.status == 404);
  CHECK(missing.json()["error"]["code"] == "model_not_found");  // the upstream's own error, relayed
}

TEST_CASE("namespaces: the URL form and the header") {
  Stack s;
  auto a = post_json(s.proxy.port(), "/ns/exp-1/v1/chat/completions", chat_body());
  REQUIRE(a.status == 200);
  CHECK(a.header("X-Reprise-Namespace") == "exp-1");
  CHECK(s.fake.stats()["last_request"]["target"] == "/v1/chat/completions");
  auto b = post_json(s.proxy.port(), "/v1/chat/completions", chat_body(), {{"X-Reprise-Namespace", "exp-2"}});
  CHECK(b.header("X-Reprise-Namespace") == "exp-2");
  CHECK_FALSE(s.fake.stats()["last_request"]["headers"].contains("x-reprise-namespace"));
  auto bad = post_json(s.proxy.port(), "/v1/chat/completions", chat_body(), {{"X-Reprise-Namespace", "a/b"}});
  CHECK(bad.status == 400);
  CHECK(bad.json()["error"]["param"] == "X-Reprise-Namespace");
  auto bad_path = post_json(s.proxy.port(), "/ns/a%20b/v1/chat/completions", chat_body());
  CHECK(bad_path.status == 400);
}

TEST_CASE("streams are relayed as they arrive, not buffered") {
  Stack s;
  s.fake.control({{"chunk_delay_ms", 60}, {"min_words", 12}, {"max_words", 12}});
  auto body = chat_body("Stream please", 1, true);
  body["stream_options"] = {{"include_usage", true}};
  Conn conn(s.proxy.port());
  conn.send(build_request("POST", "/v1/chat/completions", body.dump()));
  int active_when_first_event = -1;
  auto r = read_response(conn, std::chrono::seconds(20), [&](const std::string& so_far) {
    if (active_when_first_event < 0 && so_far.find("data: ") != std::string::npos)
      active_when_first_event = s.fake.stats()["active_streams"].get<int>();
  });
  // The first event reached the client while the fake was still producing the rest.
  CHECK(active_when_first_event == 1);
  REQUIRE(r.status == 200);
  CHECK(r.complete);
  CHECK(r.header("Content-Type").starts_with("text/event-stream"));
  bool done = false;
  auto events = sse_events(r.body, &done);
  CHECK(done);
  std::string text;
  for (auto& e : events)
    if (e.contains("choices") && !e["choices"].empty() && e["choices"][0]["delta"].contains("content"))
      text += e["choices"][0]["delta"]["content"].get<std::string>();
  CHECK(text.size() > 12);
  CHECK(events.back()["usage"]["completion_tokens"] == 12);
  CHECK(s.fake.stats()["completed_streams"] == 1);
}

// (Bypass only: a cached generation runs to its end for the cache, see cache_test.)
TEST_CASE("bypass: a client that hangs up mid-stream releases the upstream stream") {
  Stack s;
  s.fake.control({{"chunk_delay_ms", 50}, {"min_words", 200}, {"max_words", 200}});
  {
    Conn conn(s.proxy.port());
    conn.send(build_request("POST", "/v1/chat/completions", chat_body("x", 1, true).dump(), {{"X-Reprise-Cache", "bypass"}}));
    // The head and the first event may arrive in separate reads.
    std::string received;
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (received.find("data: ") == std::string::npos && Clock::now() < deadline) {
      auto piece = conn.recv_some(std::chrono::milliseconds(200));
      if (piece) received += *piece;
    }
    REQUIRE(received.find("data: ") != std::string::npos);
    CHECK(s.fake.stats()["active_streams"] == 1);
  }  // the client closes here, ~10 s before the stream would end
  auto deadline = Clock::now() + std::chrono::seconds(3);
  while (s.fake.stats()["active_streams"] != 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(s.fake.stats()["active_streams"] == 0);
  CHECK(s.fake.stats()["completed_streams"] == 0);
}

TEST_CASE("streams with n > 1 carry every choice") {
  Stack s;
  auto r = post_json(s.proxy.port(), "/v1/chat/completions", chat_body("x", 3, true));
  REQUIRE(r.status == 200);
  std::set<int> indices;
  for (auto& e : sse_events(r.body))
    for (auto& c : e["choices"]) indices.insert(c["index"].get<int>());
  CHECK(indices == std::set<int>{0, 1, 2});
}

TEST_CASE("client errors: bad JSON, no model, unknown route, wrong method") {
  Stack s;
  auto bad = request(s.proxy.port(), "POST", "/v1/chat/completions", "{not json");
  CHECK(bad.status == 400);
  CHECK(bad.json()["error"]["type"] == "invalid_request_error");
  CHECK(bad.json()["error"]["code"] == "invalid_json");
  auto array = request(s.proxy.port(), "POST", "/v1/chat/completions", "[1,2]");
  CHECK(array.status == 400);
  auto no_model = post_json(s.proxy.port(), "/v1/chat/completions", {{"messages", json::array()}});
  CHECK(no_model.status == 400);
  CHECK(no_model.json()["error"]["param"] == "model");
  auto unknown = request(s.proxy.port(), "GET", "/nothing/here");
  CHECK(unknown.status == 404);
  CHECK(unknown.json()["error"]["message"].get<std::string>().find("/nothing/here") != std::string::npos);
  auto method = request(s.proxy.port(), "GET", "/v1/chat/completions");
  CHECK(method.status == 405);
  auto mode = post_json(s.proxy.port(), "/v1/chat/completions", chat_body(), {{"X-Reprise-Cache", "maybe"}});
  CHECK(mode.status == 400);
  CHECK(s.fake.stats()["calls"] == 0);  // none of these reached the upstream
}

TEST_CASE("upstream errors in OpenAI's shape are relayed with their status") {
  Stack s;
  // Bypass: the upstream's own 4xx (the proxy refuses a bad parameter such as n = 0
  // itself, on this path too).
  s.fake.control({{"fail_next", 1}, {"fail_status", 400}});
  auto r = post_json(s.proxy.port(), "/v1/chat/completions", chat_body("x"), {{"X-Reprise-Cache", "bypass"}});
  CHECK(r.status == 400);
  CHECK(r.json()["error"]["type"] == "invalid_request_error");
  CHECK(s.fake.stats()["calls"] == 1);  // a 4xx is not retried
  auto own = post_json(s.proxy.port(), "/v1/chat/completions", chat_body("x", 0));
  CHECK(own.status == 400);
  CHECK(own.json()["error"]["param"] == "n");
  CHECK(s.fake.stats()["calls"] == 1);
  // Through the cache: the upstream's own 4xx, with its body.
  s.fake.control({{"fail_next", 1}, {"fail_status", 400}});
  auto relayed = post_json(s.proxy.port(), "/v1/chat/completions", chat_body("y"));
  CHECK(relayed.status == 400);
  CHECK(relayed.json()["error"].is_object());
  CHECK(s.fake.stats()["calls"] == 2);
}

TEST_CASE("unreachable upstream: 502, after the configured retries") {
  TempDir dir;
  // A port bound but never listening: connections to it are refused, and no other
  // process can take it while the test holds it (a freed port could be reused).
  int holder = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(holder, reinterpret_cast<sockaddr*>(&addr), &len);
  uint16_t closed_port = ntohs(addr.sin_port);
  ProxyConfig config;
  config.base_url = "http://127.0.0.1:" + std::to_string(closed_port) + "/v1";
  ProxyUnderTest proxy(dir, config.render(dir, ""));
  auto r = post_json(proxy.port(), "/v1/chat/completions", chat_body());
  CHECK(r.status == 502);
  CHECK(r.json()["error"]["code"] == "upstream_unreachable");
  CHECK(proxy.log().find("retry 2 of 2") != std::string::npos);
  ::close(holder);
}

TEST_CASE("a stalled upstream: 504 at the first-byte timeout, and no retry") {
  ProxyConfig config;
  config.upstream = "first_byte_timeout_ms = 300\n";
  Stack s(config);
  s.fake.control({{"latency_ms", 3000}});
  auto start = Clock::now();
  auto r = post_json(s.proxy.port(), "/v1/chat/completions", chat_body());
  auto elapsed = Clock::now() - start;
  CHECK(r.status == 504);
  CHECK(r.json()["error"]["code"] == "upstream_timeout");
  CHECK(elapsed < std::chrono::milliseconds(2500));
  CHECK(s.fake.stats()["calls"] == 1);
}

TEST_CASE("a malformed upstream answer is a 502, never relayed as success") {
  Stack s;
  s.fake.control({{"malformed", true}});
  auto r = post_json(s.proxy.port(), "/v1/chat/completions", chat_body());
  CHECK(r.status == 502);
  CHECK(r.json()["error"]["code"] == "upstream_bad_response");
}

TEST_CASE("a stream cut by the upstream ends with an error event and a truncated response") {
  Stack s;
  s.fake.control({{"reset_after_chunks", 3}, {"min_words", 20}, {"max_words", 20}});
  auto r = post_json(s.proxy.port(), "/v1/chat/completions", chat_body("x", 1, true));
  CHECK(r.status == 200);
  CHECK_FALSE(r.complete);
  bool done = true;
  auto events = sse_events(r.body, &done);
  CHECK_FALSE(done);
  REQUIRE(events.size() >= 2);
  CHECK(events.back().contains("error"));
  CHECK(events.back()["error"]["type"] == "upstream_error");
}

TEST_CASE("retries: 5xx and 429 are retried and counted at the upstream") {
  Stack s;
  s.fake.control({{"fail_next", 2}, {"fail_status", 503}});
  auto r = post_json(s.proxy.port(), "/v1/chat/completions", chat_body());
  CHECK(r.status == 200);
  CHECK(s.fake.stats()["calls"] == 3);

  s.fake.reset();
  s.fake.control({{"fail_next", 3}, {"fail_status", 500}});
  auto failed = post_json(s.proxy.port(), "/v1/chat/completions", chat_body());
  CHECK(failed.status == 500);  // retries exhausted: the upstream's answer is relayed
  CHECK(failed.json()["error"]["type"] == "server_error");
  CHECK(s.fake.stats()["calls"] == 3);  // 1 + max_retries

  s.fake.reset();
  s.fake.control({{"fail_next", 1}, {"fail_status", 429}, {"retry_after_ms", 400}});
  auto start = Clock::now();
  auto limited = post_json(s.proxy.port(), "/v1/chat/completions", chat_body());
  CHECK(limited.status == 200);
  CHECK(Clock::now() - start >= std::chrono::milliseconds(400));  // Retry-After honoured
  CHECK(s.fake.stats()["calls"] == 2);

  s.fake.reset();
  s.fake.control({{"fail_next", 1}, {"fail_status", 429}, {"retry_after", "3600"}});
  auto relayed = post_json(s.proxy.port(), "/v1/chat/completions", chat_body());
  CHECK(relayed.status == 429);  // longer than max_retry_after_ms: relayed at once
  CHECK(relayed.header("Retry-After") == "3600");
  CHECK(s.fake.stats()["calls"] == 1);
}

TEST_CASE("a streamed request is retried before its first byte too") {
  Stack s;
  s.fake.control({{"fail_next", 1}, {"fail_status", 502}});
  auto r = post_json(s.proxy.port(), "/v1/chat/completions", chat_body("x", 1, true));
  CHECK(r.status == 200);
  bool done = false;
  sse_events(r.body, &done);
  CHECK(done);
  CHECK(s.fake.stats()["calls"] == 2);
}

TEST_CASE("an engine route without a model, or with a missing or broken file, stops the start with the reason") {
  TempDir dir;
  FakeUpstream fake(dir);
  std::string base = ProxyConfig{}.render(dir, fake.base_url());
  // Put an engine route in front of the catch-all.
  base.replace(base.find("[[models]]"), 0, "[[models]]\nmatch = \"local-*\"\nbackend = \"engine\"\n\n");
  auto start = [&](const std::string& toml, const std::string& name) {
    write_file(dir / (name + ".toml"), toml);
    Process proxy({REPRISE_BIN, "--config", (dir / (name + ".toml")).string()}, dir.path(), name);
    CHECK(proxy.wait_exit(std::chrono::seconds(10)) != 0);
    return proxy.err();
  };
  CHECK(start(base, "no-model").find("routes \"local-*\" to the engine, but [engine] model is empty") != std::string::npos);
  CHECK(start(base + "[engine]\nmodel = \"" + (dir / "absent.gguf").string() + "\"\n", "missing")
            .find("absent.gguf does not exist") != std::string::npos);
  write_file(dir / "broken.gguf", "GGUF but not really a model");
  CHECK(start(base + "[engine]\nmodel = \"" + (dir / "broken.gguf").string() + "\"\n", "broken")
            .find("broken.gguf") != std::string::npos);
}

TEST_CASE("requests for a model no route matches are a 404") {
  TempDir dir;
  FakeUpstream fake(dir);
  std::string toml = ProxyConfig{}.render(dir, fake.base_url());
  toml.replace(toml.find("match = \"*\""), 11, "match = \"gpt-*\"");
  ProxyUnderTest proxy(dir, toml);
  auto body = chat_body();
  body["model"] = "claude-3";
  auto r = post_json(proxy.port(), "/v1/chat/completions", body);
  CHECK(r.status == 404);
  CHECK(r.json()["error"]["param"] == "model");
}

TEST_CASE("only-cached answers 504 while nothing is cached") {
  Stack s;
  auto r = post_json(s.proxy.port(), "/v1/chat/completions", chat_body(), {{"X-Reprise-Cache", "only-cached"}});
  CHECK(r.status == 504);
  CHECK(r.json()["error"]["code"] == "not_cached");
  CHECK(s.fake.stats()["calls"] == 0);
}

TEST_CASE("other /v1 routes pass through uncached") {
  Stack s;
  auto r = request(s.proxy.port(), "GET", "/v1/files?limit=2");
  CHECK(r.status == 404);  // the fake has no files API: its own 404 comes back
  CHECK(s.fake.stats()["last_request"]["target"] == "/v1/files?limit=2");
}

TEST_CASE("the Responses WebSocket transport is answered 404 so that Codex falls back to HTTP at once") {
  Stack s;
  auto r = request(s.proxy.port(), "GET", "/v1/responses", "",
                   {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Version", "13"},
                    {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}});
  CHECK(r.status == 404);
  CHECK(r.json()["error"]["message"].get<std::string>().find("supports_websockets = false") != std::string::npos);
  CHECK(s.fake.stats()["calls"] == 0);
}

TEST_CASE("stats and metrics count requests per API") {
  Stack s;
  REQUIRE(post_json(s.proxy.port(), "/v1/chat/completions", chat_body()).status == 200);
  REQUIRE(post_json(s.proxy.port(), "/v1/chat/completions", chat_body(), {{"X-Reprise-Namespace", "b"}}).status == 200);
  auto got = request(s.proxy.admin_port(), "GET", "/admin/stats");
  REQUIRE(got.status == 200);
  json stats = got.json();
  CHECK(stats["apis"]["chat.completions"]["requests"] == 2);
  CHECK(stats["apis"]["chat.completions"]["hits"] == 1);
  CHECK(stats["apis"]["chat.completions"]["upstream_calls"] == 1);
  const std::string metrics = request(s.proxy.admin_port(), "GET", "/metrics").body;
  CHECK(metrics.find("reprise_api_requests_total{api=\"chat.completions\"} 2\n") != std::string::npos);
}
