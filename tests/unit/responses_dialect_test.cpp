// The OpenAI Responses dialect (proxy/dialects/responses.cpp): its canonical request,
// the samples of an answer (JSON and streamed), the replayed event sequence, and the
// engine's side.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/generation.hpp"
#include "proxy/dialect.hpp"

using namespace reprise;
using nlohmann::json;

namespace {

const Dialect& responses() { return dialect_of(cache::Endpoint::responses); }

RenderOptions render_options(bool stream) {
  RenderOptions options;
  options.endpoint = cache::Endpoint::responses;
  options.stream = stream;
  return options;
}

cache::CanonicalRequest canonical(const json& body, const std::vector<std::string>& ignore = {}) {
  auto out = responses().canonicalize(body.dump(), "", ignore);
  REQUIRE_MESSAGE(out, (out ? "" : out.error().message));
  return out.value();
}

cache::CanonicalError refused(const std::string& raw) {
  auto out = responses().canonicalize(raw, "", {});
  REQUIRE_FALSE(out);
  return out.error();
}

json base_request() {
  return {{"model", "gpt-4.1-mini"}, {"input", "Tell me a story"}, {"instructions", "Be brief."}};
}

// A stored answer with every kind of item a replay handles: reasoning, a message with
// an annotation, a function call.
json stored_response() {
  return json::parse(R"({
    "id": "resp_0123abc", "object": "response", "created_at": 1760000000, "completed_at": 1760000002,
    "status": "completed", "background": false, "error": null, "incomplete_details": null,
    "instructions": "Be brief.", "max_output_tokens": null, "model": "gpt-4.1-mini-2025-04-14",
    "output": [
      {"id": "rs_77", "type": "reasoning", "summary": [], "encrypted_content": "gAAAA=="},
      {"id": "msg_99", "type": "message", "status": "completed", "role": "assistant",
       "content": [{"type": "output_text", "text": "The sea was calm, and the boat drifted home.",
                    "logprobs": [], "annotations": [{"type": "url_citation", "url": "https://example.com",
                    "title": "Example", "start_index": 0, "end_index": 7}]}]},
      {"id": "fc_55", "type": "function_call", "status": "completed", "call_id": "call_66",
       "name": "get_weather", "arguments": "{\"city\":\"Paris and Rome\"}"}
    ],
    "parallel_tool_calls": true, "previous_response_id": null,
    "reasoning": {"effort": null, "summary": null}, "store": true, "temperature": 1.0,
    "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
    "truncation": "disabled",
    "usage": {"input_tokens": 21, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 17,
              "output_tokens_details": {"reasoning_tokens": 4}, "total_tokens": 38},
    "user": null, "metadata": {"run": "a"}
  })");
}

// One SSE event of a rendered stream: its `event:` name and its data.
struct SseEvent {
  std::string name;
  json data;
};

std::vector<SseEvent> parse_sse(const std::string& text) {
  std::vector<SseEvent> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\n\n", pos);
    REQUIRE(end != std::string::npos);
    std::string block = text.substr(pos, end - pos);
    pos = end + 2;
    SseEvent e;
    size_t line_start = 0;
    while (line_start <= block.size()) {
      size_t nl = block.find('\n', line_start);
      std::string line = block.substr(line_start, nl == std::string::npos ? std::string::npos : nl - line_start);
      if (line.rfind("event: ", 0) == 0) e.name = line.substr(7);
      if (line.rfind("data: ", 0) == 0) e.data = json::parse(line.substr(6));
      if (nl == std::string::npos) break;
      line_start = nl + 1;
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::shared_ptr<cache::Generation> generation(bool stream = true) {
  auto request = std::make_shared<const cache::CanonicalRequest>(canonical(base_request()));
  return std::make_shared<cache::Generation>(request, cache::Endpoint::responses, 1, stream, nullptr);
}

// Feeds a stream's data to a fresh reader; the sample it keeps (or why not).
Expected<std::vector<cache::Sample>, std::string> read_stream(cache::Generation& gen, const std::vector<std::string>& data,
                                                              std::optional<StreamFault>* fault = nullptr) {
  auto reader = responses().stream_reader(gen, "fake");
  for (auto& d : data) {
    auto f = reader->on_event(d);
    if (f) {
      if (fault) *fault = f;
      return std::string("fault");
    }
  }
  return reader->finish();
}

// How openai-node's ResponseStream builds its snapshot from the events (the deltas
// appended to the item they name), checked against each output_item.done.
json accumulate(const std::vector<SseEvent>& events) {
  json snapshot;
  for (auto& e : events) {
    const json& d = e.data;
    const std::string type = d["type"];
    if (type == "response.created") snapshot = d["response"];
    if (type == "response.output_item.added") snapshot["output"].push_back(d["item"]);
    if (type == "response.content_part.added")
      snapshot["output"][d["output_index"].get<size_t>()]["content"].push_back(d["part"]);
    if (type == "response.output_text.delta") {
      json& part = snapshot["output"][d["output_index"].get<size_t>()]["content"][d["content_index"].get<size_t>()];
      part["text"] = part["text"].get<std::string>() + d["delta"].get<std::string>();
    }
    if (type == "response.output_text.annotation.added")
      snapshot["output"][d["output_index"].get<size_t>()]["content"][d["content_index"].get<size_t>()]["annotations"]
          .push_back(d["annotation"]);
    if (type == "response.function_call_arguments.delta") {
      json& item = snapshot["output"][d["output_index"].get<size_t>()];
      item["arguments"] = item["arguments"].get<std::string>() + d["delta"].get<std::string>();
    }
    if (type == "response.output_item.done") {
      json& item = snapshot["output"][d["output_index"].get<size_t>()];
      json done = d["item"];
      item.erase("status");
      done.erase("status");
      CHECK(item == done);  // the deltas add up to the item
      snapshot["output"][d["output_index"].get<size_t>()] = d["item"];
    }
    if (type == "response.completed") snapshot = d["response"];
  }
  return snapshot;
}

}  // namespace

TEST_CASE("responses dialect: fields that never shape a sample stay out of the key and are forwarded as sent") {
  json plain = base_request();
  json extra = plain;
  extra["metadata"] = {{"trace", "t-1"}};
  extra["user"] = "u-42";
  extra["safety_identifier"] = "s-1";
  extra["prompt_cache_key"] = "pk";
  extra["prompt_cache_retention"] = "24h";
  extra["store"] = false;
  extra["service_tier"] = "flex";
  extra["background"] = false;
  extra["stream"] = true;
  extra["stream_options"] = {{"include_obfuscation", false}};
  auto a = canonical(plain), b = canonical(extra);
  CHECK(a.text == b.text);
  CHECK(a.sha256 == b.sha256);
  CHECK_FALSE(a.stream);
  CHECK(b.stream);
  CHECK(b.n == 1);
  CHECK(b.model == "gpt-4.1-mini");
  CHECK(a.forward.is_null());  // nothing to keep apart: the key body is what is sent

  json sent = responses().upstream_body(b, 1, true);
  json expected = extra;
  expected.erase("stream_options");
  CHECK(sent == expected);  // the client's fields as they came, asking for a stream
  json whole = responses().upstream_body(b, 1, false);
  CHECK_FALSE(whole.contains("stream"));
  CHECK_FALSE(whole.contains("n"));
  CHECK(whole["metadata"] == json{{"trace", "t-1"}});
  CHECK(responses().upstream_target(b, true, "") == "/responses");
  CHECK(responses().upstream_target(b, false, "api-version=1") == "/responses?api-version=1");
}

TEST_CASE("responses dialect: documented defaults are explicit in the key and left out upstream") {
  json plain = base_request();
  json explicit_defaults = plain;
  explicit_defaults["temperature"] = 1;
  explicit_defaults["top_p"] = 1.0;
  explicit_defaults["parallel_tool_calls"] = true;
  explicit_defaults["truncation"] = "disabled";
  auto a = canonical(plain), b = canonical(explicit_defaults);
  CHECK(a.text == b.text);
  CHECK(a.body["temperature"] == 1);
  CHECK(a.body["truncation"] == "disabled");
  CHECK(a.defaulted.size() == 4);
  CHECK(b.defaulted.empty());
  CHECK_FALSE(a.temperature.has_value());
  CHECK(b.temperature == 1.0);
  json sent = responses().upstream_body(a, 1, false);
  CHECK(sent == plain);  // some models refuse temperature even at 1

  json other = plain;
  other["truncation"] = "auto";
  CHECK(canonical(other).text != a.text);
  json greedy = plain;
  greedy["temperature"] = 0;
  CHECK(canonical(greedy).temperature == 0.0);
  json chained = plain;
  chained["previous_response_id"] = "resp_1";
  json chained2 = plain;
  chained2["previous_response_id"] = "resp_2";
  CHECK(canonical(chained).text != canonical(chained2).text);  // chains key naturally
  json null_field = plain;
  null_field["previous_response_id"] = nullptr;
  CHECK(canonical(null_field).text == a.text);
}

TEST_CASE("responses dialect: a bad request is refused with the parameter at fault") {
  CHECK(refused(R"({"input":"hi"})").param == "model");
  CHECK(refused(R"({"model":"","input":"hi"})").param == "model");
  CHECK(refused(R"({"model":"m","input":"hi","stream":"yes"})").param == "stream");
  CHECK(refused(R"({"model":"m","input":"hi","temperature":"hot"})").param == "temperature");
  CHECK_FALSE(refused(R"([1,2])").message.empty());
  CHECK_FALSE(refused(R"({"model":"m",)").message.empty());
}

TEST_CASE("responses dialect: configured ignore paths leave the key but still go upstream") {
  json a = base_request(), b = base_request();
  a["input"] = json::array({{{"role", "user"}, {"content", "session 1"}}, {{"role", "user"}, {"content", "hi"}}});
  b["input"] = json::array({{{"role", "user"}, {"content", "session 2"}}, {{"role", "user"}, {"content", "hi"}}});
  a["instructions"] = "x-1";
  b["instructions"] = "x-2";
  const std::vector<std::string> ignore = {"input.0", "instructions"};
  auto ca = canonical(a, ignore), cb = canonical(b, ignore);
  CHECK(ca.text == cb.text);
  CHECK(canonical(a).text != canonical(b).text);
  CHECK(ca.body["input"][0].is_null());  // later items keep their index
  CHECK(ca.body["input"][1]["content"] == "hi");
  json sent = responses().upstream_body(cb, 1, false);
  CHECK(sent == b);
}

TEST_CASE("responses dialect: requests that depend on state the upstream keeps are relayed uncached") {
  auto reason = [](json body) { return responses().uncacheable(canonical(body)); };
  json plain = base_request();
  CHECK_FALSE(reason(plain));
  json c = plain;
  c["conversation"] = "conv_123";
  REQUIRE(reason(c));
  CHECK(reason(c)->find("conversation") != std::string::npos);
  json bg = plain;
  bg["background"] = true;
  REQUIRE(reason(bg));
  CHECK(reason(bg)->find("background") != std::string::npos);
  json not_bg = plain;
  not_bg["background"] = false;
  CHECK_FALSE(reason(not_bg));
  json p = plain;
  p["prompt"] = {{"id", "pmpt_1"}, {"version", "2"}};
  REQUIRE(reason(p));
  CHECK(reason(p)->find("prompt") != std::string::npos);
  json chained = plain;
  chained["previous_response_id"] = "resp_1";
  CHECK_FALSE(reason(chained));
}

TEST_CASE("responses dialect: its canonical text read back (an import) is the same text") {
  json body = base_request();
  body["metadata"] = {{"k", "v"}};
  body["stream"] = true;
  body["tools"] = json::array({{{"type", "function"}, {"name", "f"}, {"parameters", {{"type", "object"}}}}});
  body["input"] = json::array({{{"role", "user"}, {"content", "a"}}, {{"role", "user"}, {"content", "b"}}});
  const std::vector<std::string> ignore = {"input.0"};
  auto first = canonical(body, ignore);
  auto again = responses().canonicalize(first.text, "", ignore);
  REQUIRE(again);
  CHECK(again.value().text == first.text);
  CHECK(again.value().sha256 == first.sha256);
  CHECK_FALSE(again.value().stream);
  register_dialects({}, {}, {});
  auto imported = cache::canonicalize_text(cache::Endpoint::responses, first.text);
  REQUIRE(imported);
  CHECK(imported.value().text == first.text);
}

TEST_CASE("responses dialect: only a completed response is a sample, kept whole with its ids") {
  const json stored = stored_response();
  auto samples = responses().samples_from_json(stored, 1, "up");
  REQUIRE(samples);
  REQUIRE(samples.value().size() == 1);
  const cache::Sample& s = samples.value()[0];
  CHECK(s.choice == stored);
  CHECK(s.finish_reason == "completed");
  CHECK(s.prompt_tokens == 21);
  CHECK(s.completion_tokens == 17);
  CHECK(s.model == "gpt-4.1-mini-2025-04-14");
  CHECK(s.created == 1760000000);
  CHECK(s.backend == "up");
  CHECK(responses().json_body({&s}, render_options(false)) == stored.dump());

  json incomplete = stored;
  incomplete["status"] = "incomplete";
  incomplete["incomplete_details"] = {{"reason", "max_output_tokens"}};
  // Cut by max_output_tokens: the Responses API's finish_reason "length", stored.
  auto cut = responses().samples_from_json(incomplete, 1, "up");
  REQUIRE(cut);
  CHECK(cut.value().front().finish_reason == "incomplete");
  incomplete["incomplete_details"] = {{"reason", "interrupted"}};
  auto refused_incomplete = responses().samples_from_json(incomplete, 1, "up");
  REQUIRE_FALSE(refused_incomplete);
  CHECK(refused_incomplete.error().find("incomplete") != std::string::npos);
  CHECK(refused_incomplete.error().find("interrupted") != std::string::npos);
  json failed = stored;
  failed["status"] = "failed";
  CHECK_FALSE(responses().samples_from_json(failed, 1, "up"));
  CHECK_FALSE(responses().samples_from_json(json::object(), 1, "up"));
}

TEST_CASE("responses dialect: a streamed answer gives the sample its JSON answer gives, every event relayed") {
  // The events as the API sends them (fields in its order, obfuscation padding).
  const json done = json::parse(R"({"id":"resp_s1","object":"response","created_at":1760000100,"status":"completed",
    "model":"gpt-4.1-mini","output":[{"id":"msg_s1","type":"message","status":"completed","role":"assistant",
    "content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"Hi there"}]}],
    "usage":{"input_tokens":5,"output_tokens":2,"total_tokens":7}})");
  json opening = done;
  opening["status"] = "in_progress";
  opening["output"] = json::array();
  opening["usage"] = nullptr;
  const std::vector<std::string> data = {
      json{{"type", "response.created"}, {"sequence_number", 0}, {"response", opening}}.dump(),
      json{{"type", "response.in_progress"}, {"sequence_number", 1}, {"response", opening}}.dump(),
      R"({"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_s1","type":"message","status":"in_progress","content":[],"role":"assistant"}})",
      R"({"type":"response.content_part.added","sequence_number":3,"item_id":"msg_s1","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":""}})",
      R"({"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_s1","output_index":0,"content_index":0,"delta":"Hi","logprobs":[],"obfuscation":"x1y2"})",
      R"({"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_s1","output_index":0,"content_index":0,"delta":" there","logprobs":[],"obfuscation":"q"})",
      R"({"type":"response.output_text.done","sequence_number":6,"item_id":"msg_s1","output_index":0,"content_index":0,"text":"Hi there","logprobs":[]})",
      R"({"type":"response.content_part.done","sequence_number":7,"item_id":"msg_s1","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":"Hi there"}})",
      json{{"type", "response.output_item.done"}, {"sequence_number", 8}, {"output_index", 0}, {"item", done["output"][0]}}.dump(),
      json{{"type", "response.completed"}, {"sequence_number", 9}, {"response", done}}.dump()};
  auto gen = generation();
  auto streamed = read_stream(*gen, data);
  REQUIRE(streamed);
  auto whole = responses().samples_from_json(done, 1, "fake");
  REQUIRE(whole);
  CHECK(streamed.value()[0].choice == whole.value()[0].choice);
  CHECK(streamed.value()[0].completion_tokens == 2);
  CHECK(streamed.value()[0].prompt_tokens == 5);

  // Every event went to the waiting clients, untouched, and a live relay writes it
  // under its own name.
  std::vector<cache::Generation::Event> events;
  gen->read_events(0, 100, events);
  REQUIRE(events.size() == data.size());
  auto renderer = responses().stream_renderer(render_options(true));
  std::string out;
  for (size_t i = 0; i < data.size(); ++i) {
    CHECK(events[i].choice == 0);
    CHECK(events[i].delta == json::parse(data[i]));
    renderer->live(out, 0, *gen, events[i].delta);
  }
  renderer->finish(out, {});
  auto relayed = parse_sse(out);
  REQUIRE(relayed.size() == data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    CHECK(relayed[i].name == relayed[i].data["type"]);
    CHECK(relayed[i].data == json::parse(data[i]));
  }
  CHECK(out.find("[DONE]") == std::string::npos);
}

TEST_CASE("responses dialect: a stream that fails or ends early stores nothing") {
  const std::string created =
      R"({"type":"response.created","sequence_number":0,"response":{"id":"resp_x","status":"in_progress","model":"m","output":[]}})";
  SUBCASE("an error event is relayed in OpenAI's shape") {
    auto gen = generation();
    std::optional<StreamFault> fault;
    read_stream(*gen, {created, R"({"type":"error","sequence_number":1,"code":"rate_limit_exceeded","message":"Slow down","param":null})"},
                &fault);
    REQUIRE(fault);
    REQUIRE(fault->reported);
    CHECK(fault->reported->status == 429);
    json body = json::parse(fault->reported->body);
    CHECK(body["error"]["message"] == "Slow down");
    CHECK(body["error"]["code"] == "rate_limit_exceeded");
    CHECK(body["error"].contains("type"));
    CHECK(body["error"].contains("param"));
  }
  SUBCASE("response.failed") {
    auto gen = generation();
    std::optional<StreamFault> fault;
    read_stream(*gen, {created, R"({"type":"response.failed","sequence_number":1,"response":{"id":"resp_x","status":"failed","error":{"code":"server_error","message":"boom"}}})"},
                &fault);
    REQUIRE(fault);
    REQUIRE(fault->reported);
    CHECK(fault->reported->status == 502);
    CHECK(json::parse(fault->reported->body)["error"]["message"] == "boom");
  }
  SUBCASE("no response.completed") {
    auto gen = generation();
    auto result = read_stream(*gen, {created});
    REQUIRE_FALSE(result);
    CHECK(result.error().find("response.completed") != std::string::npos);
  }
  SUBCASE("response.incomplete") {
    auto gen = generation();
    auto result = read_stream(*gen, {created, R"({"type":"response.incomplete","sequence_number":1,"response":{"id":"resp_x","status":"incomplete","incomplete_details":{"reason":"no_reason_we_know"},"model":"m","output":[]}})"});
    REQUIRE_FALSE(result);
    CHECK(result.error().find("incomplete") != std::string::npos);
  }
  SUBCASE("not JSON") {
    auto gen = generation();
    std::optional<StreamFault> fault;
    read_stream(*gen, {"{broken"}, &fault);
    REQUIRE(fault);
    CHECK_FALSE(fault->reported);
    CHECK_FALSE(fault->malformed.empty());
  }
}

TEST_CASE("responses dialect: a replayed stream is the API's event sequence, and reads back as the stored object") {
  const json stored = stored_response();
  auto samples = responses().samples_from_json(stored, 1, "up");
  REQUIRE(samples);
  auto renderer = responses().stream_renderer(render_options(true));
  std::string out;
  renderer->replay(out, 0, samples.value()[0]);
  renderer->finish(out, {&samples.value()[0]});
  CHECK(out.find("[DONE]") == std::string::npos);
  auto events = parse_sse(out);
  REQUIRE(events.size() > 10);
  std::vector<std::string> types;
  for (size_t i = 0; i < events.size(); ++i) {
    CHECK(events[i].name == events[i].data["type"]);
    CHECK(events[i].data["sequence_number"] == i);
    types.push_back(events[i].data["type"]);
  }
  CHECK(types.front() == "response.created");
  CHECK(events[0].data["response"]["status"] == "in_progress");
  CHECK(events[0].data["response"]["output"] == json::array());
  CHECK(events[0].data["response"]["id"] == "resp_0123abc");
  CHECK(types[1] == "response.in_progress");
  CHECK(types.back() == "response.completed");
  CHECK(events.back().data["response"] == stored);
  // The item lifecycles, in order.
  auto count = [&](const std::string& t) { return std::count(types.begin(), types.end(), t); };
  CHECK(count("response.output_item.added") == 3);
  CHECK(count("response.output_item.done") == 3);
  CHECK(count("response.content_part.added") == 1);
  CHECK(count("response.output_text.delta") > 3);
  CHECK(count("response.output_text.done") == 1);
  CHECK(count("response.output_text.annotation.added") == 1);
  CHECK(count("response.function_call_arguments.delta") > 1);
  CHECK(count("response.function_call_arguments.done") == 1);
  CHECK(types[2] == "response.output_item.added");
  CHECK(events[2].data["item"] == stored["output"][0]);  // reasoning: whole
  CHECK(types[3] == "response.output_item.done");
  CHECK(types[4] == "response.output_item.added");
  CHECK(events[4].data["item"]["id"] == "msg_99");
  CHECK(events[4].data["item"]["content"] == json::array());
  CHECK(types[5] == "response.content_part.added");
  CHECK(events[5].data["item_id"] == "msg_99");
  CHECK(events[5].data["part"]["text"] == "");
  for (auto& e : events)
    if (e.data["type"] == "response.function_call_arguments.delta") CHECK(e.data["item_id"] == "fc_55");
  CHECK(accumulate(events) == stored);

  // What a live client of that stream would store: the stored object, exactly.
  auto gen = generation();
  std::vector<std::string> data;
  for (auto& e : events) data.push_back(e.data.dump());
  auto read_back = read_stream(*gen, data);
  REQUIRE(read_back);
  CHECK(read_back.value()[0].choice == stored);
  CHECK(read_back.value()[0].completion_tokens == 17);
}

TEST_CASE("responses dialect: an error after the head is an error event") {
  auto renderer = responses().stream_renderer(render_options(true));
  std::string out;
  renderer->error(out, R"({"error":{"message":"upstream down","type":"upstream_error","param":null,"code":"bad_gateway"}})");
  auto events = parse_sse(out);
  REQUIRE(events.size() == 1);
  CHECK(events[0].name == "error");
  CHECK(events[0].data["type"] == "error");
  CHECK(events[0].data["message"] == "upstream down");
  CHECK(events[0].data["code"] == "bad_gateway");
  CHECK(events[0].data.contains("param"));
  CHECK(events[0].data["sequence_number"] == 0);
  std::string body = R"({"error":{"message":"m","type":"t","param":null,"code":null}})";
  CHECK(responses().error_body(400, body) == body);
}

TEST_CASE("responses dialect: the engine's side: a chat request and a Responses object back") {
  json body = base_request();
  body["input"] = json::array({{{"role", "developer"}, {"content", "Use short words."}},
                               {{"type", "message"}, {"role", "user"}, {"content", json::array({{{"type", "input_text"}, {"text", "Hello"}}})}},
                               {{"role", "assistant"}, {"content", json::array({{{"type", "output_text"}, {"text", "Hi."}}})}},
                               {{"role", "user"}, {"content", "More"}}});
  body["max_output_tokens"] = 64;
  body["temperature"] = 0.5;
  auto request = canonical(body);
  auto chat = responses().engine_chat_body(request);
  REQUIRE(chat);
  json expected_messages = json::parse(R"([{"role":"system","content":"Be brief."},{"role":"system","content":"Use short words."},
    {"role":"user","content":"Hello"},{"role":"assistant","content":"Hi."},{"role":"user","content":"More"}])");
  CHECK(chat.value()["messages"] == expected_messages);
  CHECK(chat.value()["model"] == "gpt-4.1-mini");
  CHECK(chat.value()["max_tokens"] == 64);
  CHECK(chat.value()["temperature"] == 0.5);
  CHECK(chat.value()["top_p"] == 1);

  auto refusal = [](json b) {
    auto r = responses().engine_chat_body(canonical(b));
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::bad_request);
    return r.error().param;
  };
  json tools = base_request();
  tools["tools"] = json::array({{{"type", "function"}, {"name", "f"}}});
  CHECK(refusal(tools) == "tools");
  json call = base_request();
  call["input"] = json::array({{{"type", "function_call_output"}, {"call_id", "c"}, {"output", "1"}}});
  CHECK(refusal(call) == "input");
  json image = base_request();
  image["input"] = json::array({{{"role", "user"}, {"content", json::array({{{"type", "input_image"}, {"image_url", "x"}}})}}});
  CHECK(refusal(image) == "input");

  cache::Sample chat_sample;
  chat_sample.choice = {{"message", {{"role", "assistant"}, {"content", "Fine words"}}}, {"finish_reason", "stop"}};
  chat_sample.finish_reason = "stop";
  chat_sample.prompt_tokens = 9;
  chat_sample.completion_tokens = 2;
  chat_sample.model = "local";
  chat_sample.created = 1700000000;
  chat_sample.backend = "engine";
  chat_sample.energy_j = 1.5;
  cache::Sample s = responses().from_engine_sample(chat_sample, request);
  CHECK(s.energy_j == 1.5);
  CHECK(s.backend == "engine");
  CHECK(s.completion_tokens == 2);
  CHECK(s.finish_reason == "completed");
  const json& r = s.choice;
  CHECK(r["id"].get<std::string>().rfind("resp_", 0) == 0);
  CHECK(r["object"] == "response");
  CHECK(r["status"] == "completed");
  CHECK(r["created_at"] == 1700000000);
  CHECK(r["instructions"] == "Be brief.");
  CHECK(r["output"][0]["type"] == "message");
  CHECK(r["output"][0]["id"].get<std::string>().rfind("msg_", 0) == 0);
  CHECK(r["output"][0]["content"][0] == json{{"type", "output_text"}, {"text", "Fine words"}, {"annotations", json::array()}});
  CHECK(r["usage"] == json{{"input_tokens", 9}, {"output_tokens", 2}, {"total_tokens", 11}});
  CHECK(responses().samples_from_json(r, 1, "engine"));  // what an upstream would have answered

  chat_sample.finish_reason = "length";
  cache::Sample cut = responses().from_engine_sample(chat_sample, request);
  CHECK(cut.choice["status"] == "incomplete");
  CHECK(cut.choice["incomplete_details"] == json{{"reason", "max_output_tokens"}});
}
