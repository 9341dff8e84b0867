// The Anthropic Messages dialect end to end: the real binary in front of the fake's
// /v1/messages (an [[upstreams]] entry of kind "anthropic"), with the headers and
// paths the Anthropic SDK uses (anthropic-version, x-api-key, /ns/{ns} as base URL).
#include <doctest/doctest.h>

#include <set>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;

namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

ProxyConfig anthropic_config() {
  ProxyConfig config;
  config.upstream = "kind = \"anthropic\"\n";
  return config;
}

Headers sdk_headers(Headers extra = {}) {
  Headers h = {{"anthropic-version", "2023-06-01"}, {"x-api-key", "sk-ant-client-key-0123456789"}};
  h.insert(h.end(), extra.begin(), extra.end());
  return h;
}

json message_body(const std::string& text = "Say something", bool stream = false) {
  json body = {{"model", "claude-sonnet-4-5"},
               {"max_tokens", 256},
               {"messages", json::array({{{"role", "user"}, {"content", text}}})}};
  if (stream) body["stream"] = true;
  return body;
}

const json kWeatherTool = {{"name", "get_weather"},
                           {"description", "The weather in a city"},
                           {"input_schema", {{"type", "object"},
                                             {"properties", {{"city", {{"type", "string"}}}}},
                                             {"required", json::array({"city"})}}}};

Response post(const Stack& s, const std::string& target, const json& body, const Headers& headers = sdk_headers()) {
  return post_json(s.proxy.port(), target, body, headers);
}

Response in_ns(const Stack& s, const std::string& ns, const json& body, Headers headers = sdk_headers()) {
  headers.emplace_back("X-Reprise-Namespace", ns);
  return post(s, "/v1/messages", body, headers);
}

int64_t calls(Stack& s) { return s.fake.stats()["calls"].get<int64_t>(); }

// How @anthropic-ai/sdk's MessageStream rebuilds a message: it dispatches on the SSE
// event: line (a frame without one is never seen), skips ping, throws on error.
json sdk_accumulate_stream(const std::string& sse) {
  json message;
  std::vector<std::string> buffers;
  size_t at = 0;
  bool stopped = false;
  while (at < sse.size()) {
    size_t end = sse.find("\n\n", at);
    REQUIRE(end != std::string::npos);
    std::string frame = sse.substr(at, end - at);
    at = end + 2;
    REQUIRE_MESSAGE(frame.starts_with("event: "), frame);
    const size_t newline = frame.find('\n');
    const std::string name = frame.substr(7, newline - 7);
    REQUIRE(frame.substr(newline + 1).starts_with("data: "));
    const json event = json::parse(frame.substr(newline + 7));
    REQUIRE(event["type"] == name);
    REQUIRE(name != "error");
    if (name == "ping") continue;
    REQUIRE_FALSE(stopped);
    if (name == "message_start") {
      message = event["message"];
    } else if (name == "content_block_start") {
      message["content"].push_back(event["content_block"]);
      buffers.emplace_back();
    } else if (name == "content_block_delta") {
      json& block = message["content"][event["index"].get<size_t>()];
      const json& delta = event["delta"];
      if (delta["type"] == "text_delta") block["text"] = block["text"].get<std::string>() + delta["text"].get<std::string>();
      if (delta["type"] == "input_json_delta") {
        std::string& buffer = buffers[event["index"].get<size_t>()];
        buffer += delta["partial_json"].get<std::string>();
        if (json input = json::parse(buffer, nullptr, false); !input.is_discarded()) block["input"] = input;
      }
    } else if (name == "message_delta") {
      message["stop_reason"] = event["delta"]["stop_reason"];
      message["stop_sequence"] = event["delta"]["stop_sequence"];
      message["usage"]["output_tokens"] = event["usage"]["output_tokens"];
    } else if (name == "message_stop") {
      stopped = true;
    }
  }
  REQUIRE(stopped);
  return message;
}

}  // namespace

TEST_CASE("anthropic e2e: a JSON miss; then a hit in a fresh namespace (header and /ns/{ns} base URL) with zero calls and the same body") {
  Stack s(anthropic_config());
  auto miss = in_ns(s, "run-1", message_body());
  REQUIRE(miss.status == 200);
  CHECK(miss.header("X-Reprise-Cache") == "miss");
  json message = miss.json();
  CHECK(message["type"] == "message");
  CHECK(message["id"].get<std::string>().starts_with("msg_fake_"));
  CHECK(message["stop_reason"] == "end_turn");
  CHECK(calls(s) == 1);
  auto last = s.fake.stats()["last_request"];
  CHECK(last["target"] == "/v1/messages");
  CHECK(last["headers"]["anthropic-version"] == "2023-06-01");
  CHECK(last["headers"]["x-api-key"] == "sk-ant-client-key-0123456789");
  CHECK(last["body"] == message_body());  // no header fields, no defaulted temperature

  auto hit = in_ns(s, "run-2", message_body());
  REQUIRE(hit.status == 200);
  CHECK(hit.header("X-Reprise-Cache") == "hit");
  CHECK(hit.body == miss.body);
  auto url = post(s, "/ns/run-3/v1/messages", message_body());
  REQUIRE(url.status == 200);
  CHECK(url.header("X-Reprise-Cache") == "hit");
  CHECK(url.header("X-Reprise-Namespace") == "run-3");
  CHECK(url.body == miss.body);
  CHECK(calls(s) == 1);
}

TEST_CASE("anthropic e2e: streamed miss and streamed hit; with event: lines; accumulate to the same message; JSON and stream serve each other") {
  Stack s(anthropic_config());
  auto miss = in_ns(s, "a", message_body("Stream it", true));
  REQUIRE(miss.status == 200);
  CHECK(miss.header("Content-Type").starts_with("text/event-stream"));
  CHECK(miss.header("X-Reprise-Cache") == "miss");
  json live = sdk_accumulate_stream(miss.body);
  CHECK(live["id"].get<std::string>().starts_with("msg_fake_"));
  CHECK(s.fake.stats()["last_request"]["body"]["stream"] == true);

  auto hit = in_ns(s, "b", message_body("Stream it", true));
  REQUIRE(hit.status == 200);
  CHECK(hit.header("X-Reprise-Cache") == "hit");
  CHECK(hit.body.find("event: message_start\n") == 0);
  CHECK(sdk_accumulate_stream(hit.body) == live);
  // The JSON answer of the streamed sample is the message the stream built.
  auto as_json = in_ns(s, "c", message_body("Stream it"));
  REQUIRE(as_json.status == 200);
  CHECK(as_json.header("X-Reprise-Cache") == "hit");
  CHECK(as_json.json() == live);
  CHECK(calls(s) == 1);

  // And the reverse: a sample stored from JSON, streamed.
  auto json_miss = in_ns(s, "a", message_body("JSON first"));
  REQUIRE(json_miss.status == 200);
  auto streamed = in_ns(s, "b", message_body("JSON first", true));
  REQUIRE(streamed.status == 200);
  CHECK(streamed.header("X-Reprise-Cache") == "hit");
  CHECK(sdk_accumulate_stream(streamed.body) == json_miss.json());
  CHECK(calls(s) == 2);
}

TEST_CASE("anthropic e2e: the cursor: the next request in a namespace is a new sample; a fresh namespace replays them in order") {
  Stack s(anthropic_config());
  auto first = in_ns(s, "x", message_body());
  auto second = in_ns(s, "x", message_body());
  REQUIRE(first.status == 200);
  REQUIRE(second.status == 200);
  CHECK(second.header("X-Reprise-Cache") == "miss");
  CHECK(first.json()["id"] != second.json()["id"]);
  CHECK(first.json()["content"] != second.json()["content"]);
  CHECK(calls(s) == 2);
  auto replay_first = in_ns(s, "y", message_body());
  auto replay_second = in_ns(s, "y", message_body());
  CHECK(replay_first.body == first.body);
  CHECK(replay_second.body == second.body);
  CHECK(replay_second.header("X-Reprise-Samples") == "1-1");
  CHECK(calls(s) == 2);
}

TEST_CASE("anthropic e2e: a tool-use loop replays turn after turn with zero calls; ids and input exact") {
  Stack s(anthropic_config());
  json turn1 = message_body("What is the weather in Paris?", true);
  turn1["tools"] = json::array({kWeatherTool});
  auto run = [&](const std::string& ns) {
    auto first = in_ns(s, ns, turn1);
    REQUIRE(first.status == 200);
    json call = sdk_accumulate_stream(first.body);
    REQUIRE(call["stop_reason"] == "tool_use");
    REQUIRE(call["content"].size() == 2);
    const json& use = call["content"][1];
    CHECK(use["type"] == "tool_use");
    CHECK(use["id"].get<std::string>().starts_with("toolu_fake_"));
    CHECK(use["name"] == "get_weather");
    CHECK(use["input"]["city"].is_string());
    json turn2 = turn1;
    turn2.erase("stream");
    turn2["messages"].push_back({{"role", "assistant"}, {"content", call["content"]}});
    turn2["messages"].push_back(
        {{"role", "user"},
         {"content", json::array({{{"type", "tool_result"}, {"tool_use_id", use["id"]}, {"content", "18 degrees, sunny"}}})}});
    auto second = in_ns(s, ns, turn2);
    REQUIRE(second.status == 200);
    CHECK(second.json()["stop_reason"] == "end_turn");
    return std::pair{call, second.body};
  };
  auto [call, answer] = run("agent-1");
  CHECK(calls(s) == 2);
  auto [call_again, answer_again] = run("agent-2");
  CHECK(call_again == call);
  CHECK(answer_again == answer);
  CHECK(calls(s) == 2);
}

TEST_CASE("anthropic e2e: metadata.user_id is out of the key; the anthropic-version header is in it") {
  Stack s(anthropic_config());
  json a = message_body();
  a["metadata"] = {{"user_id", "session-1"}};
  json b = message_body();
  b["metadata"] = {{"user_id", "session-2"}};
  auto first = in_ns(s, "one", a);
  REQUIRE(first.status == 200);
  auto second = in_ns(s, "two", b);
  CHECK(second.header("X-Reprise-Cache") == "hit");
  CHECK(second.body == first.body);
  CHECK(calls(s) == 1);
  CHECK(s.fake.stats()["last_request"]["body"]["metadata"]["user_id"] == "session-1");  // forwarded

  auto other_version = in_ns(s, "three", a, {{"anthropic-version", "2024-01-01"}, {"x-api-key", "sk-ant-client-key-0123456789"}});
  REQUIRE(other_version.status == 200);
  CHECK(other_version.header("X-Reprise-Cache") == "miss");
  CHECK(calls(s) == 2);
  CHECK(s.fake.stats()["last_request"]["headers"]["anthropic-version"] == "2024-01-01");
}

TEST_CASE("anthropic e2e: ?beta=true is routed upstream and keyed apart; with the anthropic-beta header") {
  Stack s(anthropic_config());
  Headers beta = sdk_headers({{"anthropic-beta", "interleaved-thinking-2025-05-14"}});
  auto first = post(s, "/ns/b1/v1/messages?beta=true", message_body(), beta);
  REQUIRE(first.status == 200);
  auto last = s.fake.stats()["last_request"];
  CHECK(last["target"] == "/v1/messages?beta=true");
  CHECK(last["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14");
  auto again = post(s, "/ns/b2/v1/messages?beta=true", message_body(), beta);
  CHECK(again.header("X-Reprise-Cache") == "hit");
  CHECK(again.body == first.body);
  CHECK(calls(s) == 1);
  // Without the query, or without the beta header: other keys.
  CHECK(post(s, "/ns/b3/v1/messages", message_body(), beta).header("X-Reprise-Cache") == "miss");
  CHECK(post(s, "/ns/b4/v1/messages?beta=true", message_body()).header("X-Reprise-Cache") == "miss");
  CHECK(calls(s) == 3);
}

TEST_CASE("anthropic e2e: count_tokens is passed through to the anthropic upstream of its model") {
  TempDir dir;
  FakeUpstream openai(dir, {}, "openai-fake");
  FakeUpstream claude(dir, {}, "claude-fake");
  const std::string toml =
      "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\npath = \"" + (dir / "cache").string() +
      "\"\n[[upstreams]]\nname = \"oai\"\nbase_url = \"" + openai.base_url() +
      "\"\n[[upstreams]]\nname = \"claude\"\nkind = \"anthropic\"\nbase_url = \"" + claude.base_url() +
      "\"\n[[models]]\nmatch = \"claude-*\"\nbackend = \"claude\"\n[[models]]\nmatch = \"*\"\nbackend = \"oai\"\n";
  ProxyUnderTest proxy(dir, toml);
  auto counted = post_json(proxy.port(), "/v1/messages/count_tokens",
                           {{"model", "claude-sonnet-4-5"}, {"messages", json::array({{{"role", "user"}, {"content", "two words"}}})}},
                           sdk_headers());
  REQUIRE(counted.status == 200);
  CHECK(counted.json() == json{{"input_tokens", 5}});
  CHECK(claude.stats()["last_request"]["target"] == "/v1/messages/count_tokens");
  CHECK(openai.stats()["calls"] == 0);
  // Messages for the claude model go there too, and are cached.
  auto message = post_json(proxy.port(), "/v1/messages", message_body(), sdk_headers());
  REQUIRE(message.status == 200);
  CHECK(message.header("X-Reprise-Cache") == "miss");
  CHECK(claude.stats()["calls"] == 2);
  CHECK(openai.stats()["calls"] == 0);
}

TEST_CASE("anthropic e2e: errors in Anthropic's shape: an upstream 429; the proxy's own 400s and the only-cached 504") {
  Stack s(anthropic_config());
  s.fake.control({{"fail_next", 3}, {"fail_status", 429}});  // the proxy's first try and its 2 retries
  auto limited = post(s, "/v1/messages", message_body());
  CHECK(limited.status == 429);
  json body = limited.json();
  CHECK(body["type"] == "error");
  CHECK(body["error"]["type"] == "rate_limit_error");
  CHECK(body["error"]["message"].get<std::string>().find("injected") != std::string::npos);
  CHECK(limited.header("x-should-retry").empty());  // the SDK retries a 429
  auto limited_stream = post(s, "/v1/messages", message_body("other", true));
  CHECK(limited_stream.status == 200);  // the injected failures are spent: a real answer

  json no_max = message_body();
  no_max.erase("max_tokens");
  auto bad = post(s, "/v1/messages", no_max);
  CHECK(bad.status == 400);
  CHECK(bad.json()["type"] == "error");
  CHECK(bad.json()["error"]["type"] == "invalid_request_error");
  CHECK(bad.json()["error"]["message"].get<std::string>().find("max_tokens") != std::string::npos);
  CHECK(bad.header("x-should-retry") == "false");

  auto only_cached = post(s, "/v1/messages", message_body("never asked"), sdk_headers({{"X-Reprise-Cache", "only-cached"}}));
  CHECK(only_cached.status == 504);
  CHECK(only_cached.json()["type"] == "error");
  CHECK(only_cached.json()["error"]["type"] == "timeout_error");
  CHECK(calls(s) == 4);
}

TEST_CASE("anthropic e2e: a model routed to an upstream of kind openai is a 400 in Anthropic's shape naming both kinds") {
  Stack s;  // the fake is an [[upstreams]] entry of the default kind, openai
  auto r = post(s, "/v1/messages", message_body());
  CHECK(r.status == 400);
  json body = r.json();
  CHECK(body["type"] == "error");
  CHECK(body["error"]["type"] == "invalid_request_error");
  const std::string message = body["error"]["message"].get<std::string>();
  CHECK(message.find("\"openai\"") != std::string::npos);
  CHECK(message.find("\"anthropic\"") != std::string::npos);
  CHECK(r.header("x-should-retry") == "false");
  CHECK(s.fake.stats()["calls"] == 0);
}

TEST_CASE("anthropic e2e: a model routed to the in-process engine answers the Messages API; JSON and streamed; replayed") {
  TempDir dir;
  FakeUpstream fake(dir);
  const std::string model = (dir / "tiny.gguf").string();
  Process maker({REPRISE_MAKE_MODEL_BIN, "random", "--vocab", "builtin", "--out", model, "--dim", "64", "--hidden", "128",
                 "--layers", "2", "--heads", "4", "--kv-heads", "2", "--ctx", "256", "--type", "q8_0"},
                dir.path(), "make-model");
  REQUIRE(maker.wait_exit(std::chrono::seconds(30)) == 0);
  const std::string toml = "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\npath = \"" +
                           (dir / "cache").string() + "\"\n[[upstreams]]\nname = \"fake\"\nkind = \"anthropic\"\nbase_url = \"" +
                           fake.base_url() + "\"\n[[models]]\nmatch = \"tiny*\"\nbackend = \"engine\"\n[engine]\nmodel = \"" +
                           model + "\"\nthreads = 2\n";
  ProxyUnderTest proxy(dir, toml);
  json body = {{"model", "tiny"}, {"max_tokens", 8}, {"system", "Be brief."},
               {"messages", json::array({{{"role", "user"}, {"content", json::array({{{"type", "text"}, {"text", "hello"}}})}}})}};
  auto miss = post_json(proxy.port(), "/ns/e1/v1/messages", body, sdk_headers());
  REQUIRE_MESSAGE(miss.status == 200, miss.body);
  json message = miss.json();
  CHECK(message["type"] == "message");
  CHECK(message["id"].get<std::string>().starts_with("msg_"));
  CHECK(message["content"][0]["type"] == "text");
  CHECK((message["stop_reason"] == "end_turn" || message["stop_reason"] == "max_tokens"));
  CHECK(message["usage"]["output_tokens"].get<int>() >= 1);
  body["stream"] = true;
  auto streamed = post_json(proxy.port(), "/ns/e2/v1/messages", body, sdk_headers());
  REQUIRE(streamed.status == 200);
  CHECK(streamed.header("X-Reprise-Cache") == "hit");
  CHECK(sdk_accumulate_stream(streamed.body) == message);
  CHECK(fake.stats()["calls"] == 0);

  json with_tools = body;
  with_tools["tools"] = json::array({kWeatherTool});
  auto refused = post_json(proxy.port(), "/v1/messages", with_tools, sdk_headers());
  CHECK(refused.status == 400);
  CHECK(refused.json()["type"] == "error");
  CHECK(refused.json()["error"]["message"].get<std::string>().find("tools") != std::string::npos);
}
