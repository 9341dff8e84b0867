// The Anthropic Messages dialect (proxy/dialects/anthropic.cpp): its canonical request,
// its samples from JSON and from a stream, its replay and its errors.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxy/dialect.hpp"

using namespace reprise;
using nlohmann::json;

namespace {

const Dialect& anthropic() { return dialect_of(cache::Endpoint::messages); }

cache::CanonicalRequest canonical(const json& body, std::string_view context = {},
                                  const std::vector<std::string>& ignore = {}) {
  auto out = anthropic().canonicalize(body.dump(), context, ignore);
  REQUIRE_MESSAGE(out.ok(), (out ? "" : out.error().message));
  return out.value();
}

std::string context_of(std::vector<std::pair<std::string, std::string>> headers) {
  http::fields fields;
  for (auto& [name, value] : headers) fields.insert(name, value);
  return anthropic().key_context(fields, "", false);
}

const std::string kContext = context_of({{"anthropic-version", "2023-06-01"}});

// What Claude Code sends: a billing block first, a session in metadata, cache_control.
json claude_code_body(const std::string& cch, const std::string& session) {
  return {{"model", "claude-sonnet-4-5"},
          {"max_tokens", 1024},
          {"stream", true},
          {"metadata", {{"user_id", session}}},
          {"system", json::array({{{"type", "text"}, {"text", "x-anthropic-billing-header: cc_version=2.1; cch=" + cch}},
                                  {{"type", "text"}, {"text", "You are Claude Code."}, {"cache_control", {{"type", "ephemeral"}}}}})},
          {"messages", json::array({{{"role", "user"},
                                     {"content", json::array({{{"type", "text"}, {"text", "list files"},
                                                               {"cache_control", {{"type", "ephemeral"}}}}})}}})},
          {"tools", json::array({{{"name", "Bash"}, {"input_schema", {{"type", "object"}}},
                                  {"cache_control", {{"type", "ephemeral"}}}}})}};
}

// A message as the API answers it: text, then a tool call.
json tool_message() {
  return {{"id", "msg_01XFDUDYJgAACzvnptvVoYEL"},
          {"type", "message"},
          {"role", "assistant"},
          {"model", "claude-sonnet-4-5-20250929"},
          {"content", json::array({{{"type", "text"}, {"text", "I'll check the weather in Paris."}},
                                   {{"type", "tool_use"}, {"id", "toolu_01T1x1fJ34qAmk2tNTrN7Up6"}, {"name", "get_weather"},
                                    {"input", {{"location", "Paris, France"}, {"unit", "celsius"}, {"days", 3}}}}})},
          {"stop_reason", "tool_use"},
          {"stop_sequence", nullptr},
          {"usage", {{"input_tokens", 377}, {"cache_creation_input_tokens", 0}, {"cache_read_input_tokens", 10},
                     {"output_tokens", 65}, {"service_tier", "standard"}}}};
}

struct Frame {
  std::string name;
  json data;
};

// The frames of an SSE text: each must have its event: line and JSON data.
std::vector<Frame> frames_of(const std::string& sse) {
  std::vector<Frame> out;
  size_t at = 0;
  while (at < sse.size()) {
    size_t end = sse.find("\n\n", at);
    REQUIRE(end != std::string::npos);
    std::string frame = sse.substr(at, end - at);
    at = end + 2;
    REQUIRE(frame.starts_with("event: "));
    size_t newline = frame.find('\n');
    REQUIRE(newline != std::string::npos);
    REQUIRE(frame.substr(newline + 1).starts_with("data: "));
    out.push_back({frame.substr(7, newline - 7), json::parse(frame.substr(newline + 7))});
  }
  return out;
}

std::shared_ptr<cache::Generation> generation() {
  auto request = std::make_shared<const cache::CanonicalRequest>();
  return std::make_shared<cache::Generation>(request, cache::Endpoint::messages, 1, true, nullptr);
}

// Feeds events to a fresh reader; its result.
Expected<std::vector<cache::Sample>, std::string> read_stream(const std::vector<json>& events,
                                                              cache::Generation& gen) {
  auto reader = anthropic().stream_reader(gen, "up");
  for (auto& event : events) {
    auto fault = reader->on_event(event.dump());
    if (fault) return std::string("fault: " + fault->malformed);
  }
  return reader->finish();
}

// The events the API streams for tool_message() (design/dialects.md 2.3).
std::vector<json> api_events_of_tool_message() {
  json head = tool_message();
  head["content"] = json::array();
  head["stop_reason"] = nullptr;
  head["usage"]["output_tokens"] = 1;
  auto delta = [](int index, json d) { return json{{"type", "content_block_delta"}, {"index", index}, {"delta", d}}; };
  return {{{"type", "message_start"}, {"message", head}},
          {{"type", "content_block_start"}, {"index", 0}, {"content_block", {{"type", "text"}, {"text", ""}}}},
          {{"type", "ping"}},
          delta(0, {{"type", "text_delta"}, {"text", "I'll check"}}),
          delta(0, {{"type", "text_delta"}, {"text", " the weather in Paris."}}),
          {{"type", "content_block_stop"}, {"index", 0}},
          {{"type", "content_block_start"}, {"index", 1},
           {"content_block", {{"type", "tool_use"}, {"id", "toolu_01T1x1fJ34qAmk2tNTrN7Up6"}, {"name", "get_weather"}, {"input", json::object()}}}},
          delta(1, {{"type", "input_json_delta"}, {"partial_json", ""}}),
          delta(1, {{"type", "input_json_delta"}, {"partial_json", "{\"location\": \"Par"}}),
          delta(1, {{"type", "input_json_delta"}, {"partial_json", "is, France\", \"unit\": \"celsius\", \"days\": 3}"}}),
          {{"type", "content_block_stop"}, {"index", 1}},
          {{"type", "message_delta"}, {"delta", {{"stop_reason", "tool_use"}, {"stop_sequence", nullptr}}}, {"usage", {{"output_tokens", 65}}}},
          {{"type", "message_stop"}}};
}

}  // namespace

TEST_CASE("anthropic canonical: metadata; cache_control and Claude Code's billing block are out of the key; forwarded as sent") {
  auto a = canonical(claude_code_body("1a2b", "session-1"), kContext);
  auto b = canonical(claude_code_body("9z8y", "session-2"), kContext);
  CHECK(a.text == b.text);
  CHECK(a.stream);
  CHECK(a.n == 1);
  CHECK(a.model == "claude-sonnet-4-5");
  CHECK_FALSE(a.body.contains("metadata"));
  CHECK(a.text.find("cache_control") == std::string::npos);
  CHECK(a.text.find("billing") == std::string::npos);
  CHECK(a.text.find("You are Claude Code.") != std::string::npos);

  // Upstream gets the client's body (less stream, plus stream when streaming) unchanged.
  json sent = claude_code_body("9z8y", "session-2");
  json upstream = anthropic().upstream_body(b, 1, true);
  CHECK(upstream == sent);
  sent.erase("stream");
  CHECK(anthropic().upstream_body(b, 1, false) == sent);

  // Another prompt is another key.
  json other = claude_code_body("1a2b", "session-1");
  other["messages"][0]["content"][0]["text"] = "delete files";
  CHECK(canonical(other, kContext).text != a.text);
}

TEST_CASE("anthropic canonical: the anthropic-version and anthropic-beta headers are in the key; not in the upstream body") {
  json body = {{"model", "claude-x"}, {"max_tokens", 10}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  const std::string v1 = context_of({{"anthropic-version", "2023-06-01"}});
  const std::string v2 = context_of({{"anthropic-version", "2023-01-01"}});
  CHECK(v1.find('\n') == std::string::npos);
  CHECK(context_of({}) == "");
  auto a = canonical(body, v1);
  CHECK(a.body["anthropic-version"] == "2023-06-01");
  CHECK(canonical(body, v2).text != a.text);
  const std::string beta_ab = context_of({{"anthropic-version", "2023-06-01"}, {"Anthropic-Beta", "b-2025, a-2024"}});
  const std::string beta_ba = context_of({{"anthropic-version", "2023-06-01"}, {"anthropic-beta", "a-2024"}, {"anthropic-beta", "b-2025"}});
  CHECK(beta_ab == beta_ba);  // a set of feature names
  auto beta = canonical(body, beta_ab);
  CHECK(beta.text != a.text);
  CHECK(beta.body["anthropic-beta"] == "a-2024,b-2025");
  // The headers go upstream as the client sent them, never in the body.
  json upstream = anthropic().upstream_body(beta, 1, false);
  CHECK_FALSE(upstream.contains("anthropic-version"));
  CHECK_FALSE(upstream.contains("anthropic-beta"));
  CHECK(upstream == body);
  CHECK(anthropic().upstream_target(beta, false, "") == "/messages");
  CHECK(anthropic().upstream_target(beta, true, "beta=true") == "/messages?beta=true");
}

TEST_CASE("anthropic canonical: temperature defaults to 1 explicitly; top_p and top_k do not; greedy reads the explicit one") {
  json body = {{"model", "claude-x"}, {"max_tokens", 10}, {"messages", json::array()}};
  auto absent = canonical(body, kContext);
  CHECK(absent.body["temperature"] == 1);
  CHECK(absent.defaulted == std::vector<std::string>{"temperature"});
  CHECK_FALSE(absent.temperature.has_value());
  CHECK_FALSE(absent.body.contains("top_p"));
  CHECK_FALSE(absent.body.contains("top_k"));
  CHECK_FALSE(anthropic().upstream_body(absent, 1, false).contains("temperature"));
  body["temperature"] = 1.0;
  auto explicit_one = canonical(body, kContext);
  CHECK(explicit_one.text == absent.text);
  CHECK(explicit_one.temperature == 1.0);
  CHECK(anthropic().upstream_body(explicit_one, 1, false)["temperature"] == 1);
  body["temperature"] = 0;
  CHECK(canonical(body, kContext).temperature == 0.0);
}

TEST_CASE("anthropic canonical: configured ignore paths are out of the key and still forwarded") {
  json body = claude_code_body("c", "s");
  body["system"][1]["text"] = "Today is Monday.";
  json other = body;
  other["system"][1]["text"] = "Today is Tuesday.";
  const std::vector<std::string> ignore = {"system.1", "tools.0.name"};
  CHECK(canonical(body, kContext).text != canonical(other, kContext).text);
  auto a = canonical(body, kContext, ignore);
  auto b = canonical(other, kContext, ignore);
  CHECK(a.text == b.text);
  json sent = other;
  sent.erase("stream");
  CHECK(anthropic().upstream_body(b, 1, false) == sent);
}

TEST_CASE("anthropic canonical: a canonical body read back without context gives the same text") {
  const std::vector<std::string> ignore = {"system.1", "metadata.user_id"};
  for (const std::string& context : {kContext, context_of({{"anthropic-version", "2023-06-01"}, {"anthropic-beta", "x,y"}}),
                                     std::string()}) {
    for (json body : {claude_code_body("a", "b"),
                      json{{"model", "m"}, {"max_tokens", 1.0}, {"temperature", 0.5}, {"top_k", 5}, {"messages", json::array()}}}) {
      auto first = canonical(body, context, ignore);
      auto again = canonical(json::parse(first.text), "", ignore);
      CHECK(again.text == first.text);
      CHECK(again.sha256 == first.sha256);
    }
  }
}

TEST_CASE("anthropic canonical: what the API requires is checked; naming the parameter") {
  const json ok = {{"model", "m"}, {"max_tokens", 5}, {"messages", json::array()}};
  struct Case {
    const char* field;
    json value;  // null: removed
  };
  for (const Case& c : {Case{"model", nullptr}, Case{"model", ""}, Case{"model", 5}, Case{"max_tokens", nullptr},
                        Case{"max_tokens", 0}, Case{"max_tokens", -3}, Case{"max_tokens", 1.5}, Case{"messages", nullptr},
                        Case{"messages", "hi"}, Case{"stream", "yes"}, Case{"temperature", "hot"}}) {
    json body = ok;
    if (c.value.is_null()) body.erase(c.field);
    else body[c.field] = c.value;
    auto out = anthropic().canonicalize(body.dump(), kContext, {});
    REQUIRE_FALSE(out.ok());
    CHECK(out.error().param == c.field);
  }
  CHECK_FALSE(anthropic().canonicalize("[1]", kContext, {}).ok());
  CHECK_FALSE(anthropic().canonicalize(R"({"model":"m","model":"n","max_tokens":1,"messages":[]})", kContext, {}).ok());
}

TEST_CASE("anthropic: a request for a code-execution container is relayed uncached") {
  json body = {{"model", "m"}, {"max_tokens", 5}, {"messages", json::array()}};
  CHECK_FALSE(anthropic().uncacheable(canonical(body, kContext)).has_value());
  body["container"] = "container_011";
  auto reason = anthropic().uncacheable(canonical(body, kContext));
  REQUIRE(reason.has_value());
  CHECK(reason->find("container") != std::string::npos);
}

TEST_CASE("anthropic samples_from_json: complete answers are samples; the whole message kept; others are refused") {
  json message = tool_message();
  auto samples = anthropic().samples_from_json(message, 1, "claude-up");
  REQUIRE(samples.ok());
  REQUIRE(samples.value().size() == 1);
  const cache::Sample& s = samples.value()[0];
  CHECK(s.choice == message);
  CHECK(s.finish_reason == "tool_use");
  CHECK(s.prompt_tokens == 387);
  CHECK(s.completion_tokens == 65);
  CHECK(s.model == "claude-sonnet-4-5-20250929");
  CHECK(s.backend == "claude-up");
  CHECK(anthropic().json_body({&s}, RenderOptions{}) == message.dump());

  for (const char* reason : {"end_turn", "max_tokens", "stop_sequence", "refusal"}) {
    message["stop_reason"] = reason;
    CHECK(anthropic().samples_from_json(message, 1, "up").ok());
  }
  for (json reason : {json("pause_turn"), json("model_context_window_exceeded"), json(nullptr)}) {
    message["stop_reason"] = reason;
    auto refused = anthropic().samples_from_json(message, 1, "up");
    REQUIRE_FALSE(refused.ok());
  }
  message.erase("stop_reason");
  CHECK_FALSE(anthropic().samples_from_json(message, 1, "up").ok());
  CHECK_FALSE(anthropic().samples_from_json({{"type", "error"}}, 1, "up").ok());
}

TEST_CASE("anthropic stream reader: the API's events give the JSON answer's message; each but ping published verbatim") {
  auto gen = generation();
  auto events = api_events_of_tool_message();
  auto samples = read_stream(events, *gen);
  REQUIRE_MESSAGE(samples.ok(), (samples ? "" : samples.error()));
  CHECK(samples.value()[0].choice == tool_message());
  CHECK(samples.value()[0].finish_reason == "tool_use");
  CHECK(samples.value()[0].completion_tokens == 65);
  CHECK(gen->model() == "claude-sonnet-4-5-20250929");
  std::vector<cache::Generation::Event> published;
  gen->read_events(0, 100, published);
  REQUIRE(published.size() == events.size() - 1);  // no ping
  for (size_t i = 0, j = 0; i < events.size(); ++i) {
    if (events[i]["type"] == "ping") continue;
    CHECK(published[j].choice == 0);
    CHECK(published[j++].delta == events[i]);
  }

  // Cut before message_stop, or ended with pause_turn: nothing to store.
  auto cut = events;
  cut.pop_back();
  CHECK_FALSE(read_stream(cut, *generation()).ok());
  auto paused = events;
  paused[paused.size() - 2]["delta"]["stop_reason"] = "pause_turn";
  CHECK_FALSE(read_stream(paused, *generation()).ok());
  auto before_start = events;
  before_start.erase(before_start.begin());
  CHECK_FALSE(read_stream(before_start, *generation()).ok());
}

TEST_CASE("anthropic stream reader: an error event is the upstream's error; with its status") {
  for (auto [type, status] : {std::pair{"overloaded_error", 529u}, {"rate_limit_error", 429u}, {"api_error", 500u}}) {
    auto gen = generation();
    auto reader = anthropic().stream_reader(*gen, "up");
    CHECK_FALSE(reader->on_event(api_events_of_tool_message()[0].dump()));
    json error = {{"type", "error"}, {"error", {{"type", type}, {"message", "Overloaded"}}}};
    auto fault = reader->on_event(error.dump());
    REQUIRE(fault.has_value());
    REQUIRE(fault->reported.has_value());
    CHECK(fault->reported->status == status);
    CHECK(json::parse(fault->reported->body) == error);
    CHECK(anthropic().error_body(status, fault->reported->body) == fault->reported->body);
  }
  auto gen = generation();
  auto fault = anthropic().stream_reader(*gen, "up")->on_event("{not json");
  REQUIRE(fault.has_value());
  CHECK_FALSE(fault->reported.has_value());
  CHECK_FALSE(fault->malformed.empty());
}

TEST_CASE("anthropic replay: the event sequence accumulates to the stored message exactly; ids and tool input included") {
  json thinking = tool_message();
  thinking["content"] = json::array(
      {{{"type", "thinking"}, {"thinking", "The user wants weather. I should call the tool."}, {"signature", "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}},
       {{"type", "redacted_thinking"}, {"data", "EmwKAhgBEgy3va3pzix"}},
       {{"type", "text"}, {"text", "Paris is lovely — ünïcödé ✓ in spring."},
        {"citations", json::array({{{"type", "char_location"}, {"cited_text", "Paris"}, {"document_index", 0}}})}},
       {{"type", "tool_use"}, {"id", "toolu_01A09q90qw90lq917835lq9"}, {"name", "get_weather"},
        {"input", {{"location", "Paris ✓ €"}, {"nested", {{"a", json::array({1, 2.5, nullptr, true})}}}}}},
       {{"type", "tool_use"}, {"id", "toolu_empty"}, {"name", "now"}, {"input", json::object()}}});
  thinking["container"] = nullptr;
  for (const json& stored : {tool_message(), thinking}) {
    auto sample = anthropic().samples_from_json(stored, 1, "up");
    REQUIRE(sample.ok());
    auto renderer = anthropic().stream_renderer(RenderOptions{});
    std::string sse;
    renderer->replay(sse, 0, sample.value()[0]);
    std::string tail;
    renderer->finish(tail, {&sample.value()[0]});
    CHECK(tail.empty());
    auto frames = frames_of(sse);
    REQUIRE(frames.size() >= 4);
    std::vector<json> events;
    for (auto& frame : frames) {
      CHECK(frame.name == frame.data["type"]);  // the SDK dispatches on the event: line
      events.push_back(frame.data);
    }
    CHECK(frames.front().name == "message_start");
    CHECK(frames.front().data["message"]["content"] == json::array());
    CHECK(frames.front().data["message"]["stop_reason"].is_null());
    CHECK(frames.front().data["message"]["usage"]["output_tokens"] == 1);
    CHECK(frames.front().data["message"]["usage"]["input_tokens"] == 377);
    CHECK(frames[frames.size() - 2].name == "message_delta");
    CHECK(frames[frames.size() - 2].data["usage"]["output_tokens"] == 65);
    CHECK(frames.back().name == "message_stop");
    auto round_trip = read_stream(events, *generation());
    REQUIRE_MESSAGE(round_trip.ok(), (round_trip ? "" : round_trip.error()));
    CHECK(round_trip.value()[0].choice == stored);
    CHECK(round_trip.value()[0].choice.dump() == stored.dump());
  }
  // The text arrives in pieces, the tool input as several input_json_delta pieces.
  std::string sse;
  auto sample = anthropic().samples_from_json(tool_message(), 1, "up");
  anthropic().stream_renderer({})->replay(sse, 0, sample.value()[0]);
  int text_deltas = 0, json_deltas = 0;
  for (auto& frame : frames_of(sse)) {
    if (frame.name != "content_block_delta") continue;
    text_deltas += frame.data["delta"]["type"] == "text_delta";
    json_deltas += frame.data["delta"]["type"] == "input_json_delta";
  }
  CHECK(text_deltas == 6);
  CHECK(json_deltas > 1);
}

TEST_CASE("anthropic live events and stream errors carry their event: lines") {
  auto renderer = anthropic().stream_renderer({});
  auto gen = generation();
  std::string out;
  renderer->live(out, 0, *gen, {{"type", "content_block_stop"}, {"index", 0}});
  CHECK(out == "event: content_block_stop\ndata: {\"index\":0,\"type\":\"content_block_stop\"}\n\n");
  out.clear();
  renderer->error(out, R"({"type":"error","error":{"type":"api_error","message":"x"}})");
  CHECK(out == "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"x\"}}\n\n");
}

TEST_CASE("anthropic error_body: OpenAI-shaped errors become Anthropic's by status; Anthropic's are kept; x-should-retry") {
  const std::string anthropic_shaped = R"({"type":"error","error":{"type":"rate_limit_error","message":"slow down"},"request_id":"req_1"})";
  CHECK(anthropic().error_body(429, anthropic_shaped) == anthropic_shaped);
  struct Case {
    unsigned status;
    const char* type;
  };
  for (auto [status, type] : {Case{400, "invalid_request_error"}, Case{401, "authentication_error"}, Case{402, "billing_error"},
                              Case{403, "permission_error"}, Case{404, "not_found_error"}, Case{413, "request_too_large"},
                              Case{429, "rate_limit_error"}, Case{500, "api_error"}, Case{502, "api_error"},
                              Case{503, "api_error"}, Case{504, "timeout_error"}, Case{529, "overloaded_error"}}) {
    json openai = {{"error", {{"message", "it failed"}, {"type", "whatever"}, {"param", nullptr}, {"code", nullptr}}}};
    json out = json::parse(anthropic().error_body(status, openai.dump()));
    CHECK(out == json{{"type", "error"}, {"error", {{"type", type}, {"message", "it failed"}}}});
  }
  CHECK(json::parse(anthropic().error_body(502, "upstream exploded"))["error"]["message"] == "upstream exploded");
  for (unsigned status : {400u, 401u, 403u, 404u, 413u}) {
    http::fields headers;
    anthropic().error_headers(status, headers);
    CHECK(headers["x-should-retry"] == "false");
  }
  for (unsigned status : {408u, 409u, 429u, 500u, 504u, 529u}) {
    http::fields headers;
    anthropic().error_headers(status, headers);
    CHECK(headers.find("x-should-retry") == headers.end());
  }
}

TEST_CASE("anthropic engine: text conversations become the engine's chat body; its sample becomes a message") {
  json body = {{"model", "tiny"}, {"max_tokens", 20}, {"top_k", 5}, {"stop_sequences", json::array({"END"})},
               {"system", json::array({{{"type", "text"}, {"text", "Be brief."}}})},
               {"messages", json::array({{{"role", "user"}, {"content", "hi"}},
                                         {{"role", "assistant"}, {"content", json::array({{{"type", "text"}, {"text", "hello"}}})}},
                                         {{"role", "user"}, {"content", "again"}}})}};
  auto request = canonical(body, kContext);
  auto chat = anthropic().engine_chat_body(request);
  REQUIRE(chat.ok());
  CHECK(chat.value() == json{{"model", "tiny"}, {"max_tokens", 20}, {"temperature", 1}, {"top_k", 5}, {"stop", json::array({"END"})},
                             {"messages", json::array({{{"role", "system"}, {"content", "Be brief."}},
                                                       {{"role", "user"}, {"content", "hi"}},
                                                       {{"role", "assistant"}, {"content", "hello"}},
                                                       {{"role", "user"}, {"content", "again"}}})}});
  json tools = body;
  tools["tools"] = json::array({{{"name", "t"}, {"input_schema", {{"type", "object"}}}}});
  CHECK_FALSE(anthropic().engine_chat_body(canonical(tools, kContext)).ok());
  json tool_result = body;
  tool_result["messages"][2]["content"] = json::array({{{"type", "tool_result"}, {"tool_use_id", "toolu_1"}, {"content", "4"}}});
  auto refused = anthropic().engine_chat_body(canonical(tool_result, kContext));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().kind == ErrorKind::bad_request);

  cache::Sample chat_sample;
  chat_sample.choice = {{"message", {{"role", "assistant"}, {"content", "Hi there"}}}, {"finish_reason", "length"}};
  chat_sample.finish_reason = "length";
  chat_sample.prompt_tokens = 12;
  chat_sample.completion_tokens = 20;
  chat_sample.model = "tiny";
  chat_sample.backend = "engine";
  chat_sample.energy_j = 1.5;
  cache::Sample s = anthropic().from_engine_sample(chat_sample, request);
  CHECK(s.choice["id"].get<std::string>().starts_with("msg_"));
  CHECK(s.choice["type"] == "message");
  CHECK(s.choice["content"] == json::array({{{"type", "text"}, {"text", "Hi there"}}}));
  CHECK(s.choice["stop_reason"] == "max_tokens");
  CHECK(s.choice["usage"] == json{{"input_tokens", 12}, {"output_tokens", 20}});
  CHECK(s.finish_reason == "max_tokens");
  CHECK(s.energy_j == 1.5);
  CHECK(s.backend == "engine");
  CHECK(anthropic().samples_from_json(s.choice, 1, "engine").ok());
}
