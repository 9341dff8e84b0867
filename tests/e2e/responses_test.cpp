// End to end through the real binary: the OpenAI Responses API (POST /v1/responses,
// GET /v1/responses/{id}) cached in front of the fake upstream, JSON and streamed,
// with tool calls, replayed with the ids exactly as first served.
#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <set>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

namespace {

json request_body(const std::string& input = "Tell me a story", bool stream = false) {
  json body = {{"model", "gpt-4.1-mini"}, {"input", input}, {"instructions", "Be brief."}};
  if (stream) body["stream"] = true;
  return body;
}

// The upstream's Responses calls so far.
int64_t calls(FakeUpstream& fake) {
  auto by_path = fake.stats()["calls_by_path"];
  return by_path.contains("/v1/responses") ? by_path["/v1/responses"].get<int64_t>() : 0;
}

// In namespace `ns`, by header.
Response create(uint16_t port, const json& body, const std::string& ns, Headers headers = {}) {
  headers.emplace_back("X-Reprise-Namespace", ns);
  return post_json(port, "/v1/responses", body, headers);
}

// In namespace `ns`, by URL.
Response create_at(uint16_t port, const json& body, const std::string& ns, Headers headers = {}) {
  return post_json(port, "/ns/" + ns + "/v1/responses", body, headers);
}

struct SseEvent {
  std::string name;  // the `event:` line
  json data;
};

std::vector<SseEvent> events_of(const std::string& text) {
  std::vector<SseEvent> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\n\n", pos);
    REQUIRE(end != std::string::npos);
    std::string block = text.substr(pos, end - pos);
    pos = end + 2;
    SseEvent e;
    for (size_t start = 0; start <= block.size();) {
      size_t nl = block.find('\n', start);
      std::string line = block.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      if (line.rfind("event: ", 0) == 0) e.name = line.substr(7);
      if (line.rfind("data: ", 0) == 0) e.data = json::parse(line.substr(6));
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
    out.push_back(std::move(e));
  }
  return out;
}

// A well-formed Responses stream: every event named as its type, sequence numbers
// 0, 1, ... in order, ending with response.completed and no [DONE]. Its final object.
json check_stream(const Response& r) {
  REQUIRE(r.status == 200);
  CHECK(r.header("Content-Type").find("text/event-stream") != std::string::npos);
  CHECK(r.body.find("[DONE]") == std::string::npos);
  auto events = events_of(r.body);
  REQUIRE(events.size() >= 4);
  for (size_t i = 0; i < events.size(); ++i) {
    CHECK(events[i].name == events[i].data["type"]);
    CHECK(events[i].data["sequence_number"] == i);
  }
  CHECK(events.front().data["type"] == "response.created");
  CHECK(events.back().data["type"] == "response.completed");
  return events.back().data["response"];
}

// The text the SDKs accumulate from a stream's output_text deltas.
std::string streamed_text(const Response& r) {
  std::string text;
  for (auto& e : events_of(r.body))
    if (e.data["type"] == "response.output_text.delta") text += e.data["delta"].get<std::string>();
  return text;
}

std::string output_text(const json& response) {
  std::string text;
  for (auto& item : response["output"])
    if (item["type"] == "message")
      for (auto& part : item["content"])
        if (part["type"] == "output_text") text += part["text"].get<std::string>();
  return text;
}

json weather_tool() {
  return json::parse(R"({"type":"function","name":"get_weather","description":"The weather in a city",
    "parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string"}},
    "required":["city"],"additionalProperties":false},"strict":true})");
}

}  // namespace

TEST_CASE("responses: a JSON miss is replayed in a fresh namespace with no upstream call, byte for byte") {
  Stack s;
  json body = request_body();
  body["metadata"] = {{"run", "first"}};
  body["store"] = false;
  auto miss = create(s.proxy.port(), body, "one");
  REQUIRE(miss.status == 200);
  CHECK(miss.header("X-Reprise-Cache") == "miss");
  const json first = miss.json();
  CHECK(first["id"].get<std::string>().starts_with("resp_fake_"));
  CHECK(first["status"] == "completed");
  CHECK_FALSE(output_text(first).empty());
  CHECK(calls(s.fake) == 1);
  // The upstream got the client's fields, defaults left out, no stream asked.
  json sent = s.fake.stats()["last_request"]["body"];
  CHECK(sent["metadata"] == json{{"run", "first"}});
  CHECK(sent["store"] == false);
  CHECK_FALSE(sent.contains("temperature"));
  CHECK_FALSE(sent.contains("stream"));
  CHECK_FALSE(sent.contains("n"));

  // metadata and store do not shape the sample: the same key.
  body["metadata"] = {{"run", "second"}};
  body.erase("store");
  auto hit = create_at(s.proxy.port(), body, "two");
  REQUIRE(hit.status == 200);
  CHECK(hit.header("X-Reprise-Cache") == "hit");
  CHECK(hit.header("X-Reprise-Namespace") == "two");
  CHECK(hit.body == miss.body);
  CHECK(calls(s.fake) == 1);
}

TEST_CASE("responses: a streamed miss relays the upstream's events and a streamed hit replays the same sequence") {
  Stack s;
  auto miss = create(s.proxy.port(), request_body("Stream a story", true), "one");
  const json live = check_stream(miss);
  CHECK(miss.header("X-Reprise-Cache") == "miss");
  CHECK(calls(s.fake) == 1);
  CHECK(s.fake.stats()["last_request"]["body"]["stream"] == true);

  auto hit = create_at(s.proxy.port(), request_body("Stream a story", true), "two");
  const json replayed = check_stream(hit);
  CHECK(hit.header("X-Reprise-Cache") == "hit");
  CHECK(calls(s.fake) == 1);
  CHECK(replayed == live);
  CHECK(replayed["id"].get<std::string>().starts_with("resp_fake_"));
  CHECK(streamed_text(hit) == streamed_text(miss));
  CHECK(streamed_text(hit) == output_text(live));
  // The replay is the API's own sequence: the same events the upstream sent.
  auto a = events_of(miss.body), b = events_of(hit.body);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].data == b[i].data);
}

TEST_CASE("responses: a streamed sample answers a JSON request, and a JSON sample a streamed one") {
  Stack s;
  auto streamed = create(s.proxy.port(), request_body("First streamed", true), "a");
  const json from_stream = check_stream(streamed);
  auto as_json = create(s.proxy.port(), request_body("First streamed"), "b");
  REQUIRE(as_json.status == 200);
  CHECK(as_json.header("X-Reprise-Cache") == "hit");
  CHECK(as_json.json() == from_stream);

  auto whole = create(s.proxy.port(), request_body("First whole"), "a");
  REQUIRE(whole.status == 200);
  auto as_stream = create(s.proxy.port(), request_body("First whole", true), "b");
  CHECK(as_stream.header("X-Reprise-Cache") == "hit");
  CHECK(check_stream(as_stream) == whole.json());
  CHECK(streamed_text(as_stream) == output_text(whole.json()));
  CHECK(calls(s.fake) == 2);
}

TEST_CASE("responses: each request of a namespace takes the next sample; another namespace replays them in order") {
  Stack s;
  auto r1 = create(s.proxy.port(), request_body(), "a");
  auto r2 = create(s.proxy.port(), request_body(), "a");
  REQUIRE(r1.status == 200);
  REQUIRE(r2.status == 200);
  CHECK(r2.header("X-Reprise-Cache") == "miss");
  CHECK(r1.json()["id"] != r2.json()["id"]);
  CHECK(calls(s.fake) == 2);
  CHECK(r1.header("X-Reprise-Samples") == "0-0");
  CHECK(r2.header("X-Reprise-Samples") == "1-1");

  auto b1 = create_at(s.proxy.port(), request_body(), "b");
  auto b2 = create_at(s.proxy.port(), request_body(), "b");
  CHECK(b1.body == r1.body);
  CHECK(b2.body == r2.body);
  CHECK(calls(s.fake) == 2);
  // An explicit index is one sample here.
  auto pick = create(s.proxy.port(), request_body(), "c", {{"X-Reprise-Sample", "1"}});
  CHECK(pick.body == r2.body);
  auto range = create(s.proxy.port(), request_body(), "c", {{"X-Reprise-Sample", "0-1"}});
  CHECK(range.status == 400);
  CHECK(range.json()["error"]["param"] == "X-Reprise-Sample");
}

TEST_CASE("responses: a two-turn function tool loop replays with zero upstream calls, ids kept") {
  Stack s;
  json turn1 = {{"model", "gpt-4.1-mini"},
                {"input", json::array({{{"role", "user"}, {"content", "What is the weather in Paris?"}}})},
                {"tools", json::array({weather_tool()})}};
  // The loop an agent runs: the call, then its output sent back with the call.
  auto run = [&](const std::string& ns, bool stream_first) {
    json t1 = turn1;
    if (stream_first) t1["stream"] = true;
    auto first = create(s.proxy.port(), t1, ns);
    json response = stream_first ? check_stream(first) : first.json();
    REQUIRE(first.status == 200);
    REQUIRE(response["output"].size() == 1);
    const json call = response["output"][0];
    REQUIRE(call["type"] == "function_call");
    CHECK(call["name"] == "get_weather");
    json args = json::parse(call["arguments"].get<std::string>());
    CHECK(args["city"].is_string());
    CHECK_FALSE(args.contains("unit"));  // only the required properties
    if (stream_first) {  // the streamed deltas add up to the arguments
      std::string streamed;
      for (auto& e : events_of(first.body))
        if (e.data["type"] == "response.function_call_arguments.delta") {
          CHECK(e.data["item_id"] == call["id"]);
          streamed += e.data["delta"].get<std::string>();
        }
      CHECK(streamed == call["arguments"]);
    }
    json t2 = turn1;
    t2["input"].push_back(call);
    t2["input"].push_back({{"type", "function_call_output"}, {"call_id", call["call_id"]}, {"output", "{\"temp\":21}"}});
    auto second = create(s.proxy.port(), t2, ns);
    REQUIRE(second.status == 200);
    CHECK(second.json()["output"][0]["type"] == "message");
    return std::make_pair(response, second.json());
  };
  auto [call1, answer1] = run("agent-1", false);
  CHECK(call1["output"][0]["id"].get<std::string>().starts_with("fc_fake_"));
  CHECK(call1["output"][0]["call_id"].get<std::string>().starts_with("call_fake_"));
  CHECK(calls(s.fake) == 2);
  auto [call2, answer2] = run("agent-2", true);
  CHECK(call2 == call1);
  CHECK(answer2 == answer1);
  CHECK(calls(s.fake) == 2);
}

TEST_CASE("responses: GET /v1/responses/{id} answers ids Reprise served, and relays the others") {
  Stack s;
  auto served = create(s.proxy.port(), request_body(), "a");
  REQUIRE(served.status == 200);
  const std::string id = served.json()["id"];
  auto replayed = create(s.proxy.port(), request_body(), "b");  // a hit serves the same id again
  CHECK(replayed.header("X-Reprise-Cache") == "hit");
  const int64_t before = s.fake.stats()["calls"];
  auto got = request(s.proxy.port(), "GET", "/v1/responses/" + id);
  REQUIRE(got.status == 200);
  CHECK(got.body == served.body);
  CHECK(got.header("X-Reprise-Cache") == "hit");
  CHECK(s.fake.stats()["calls"] == before);

  // Unknown ids, and ids served to another key, are the upstream's to answer.
  auto unknown = request(s.proxy.port(), "GET", "/v1/responses/resp_never_served");
  CHECK(unknown.status == 404);
  CHECK(unknown.json()["error"].contains("message"));
  CHECK(s.fake.stats()["calls"] == before + 1);
  CHECK(s.fake.stats()["last_request"]["target"] == "/v1/responses/resp_never_served");
  auto other_key = request(s.proxy.port(), "GET", "/v1/responses/" + id, {}, {{"Authorization", "Bearer sk-someone-else"}});
  CHECK(other_key.status == 404);
  CHECK(s.fake.stats()["calls"] == before + 2);
}

TEST_CASE("responses: a conversation request is relayed uncached, with the reason") {
  Stack s;
  json body = request_body();
  body["conversation"] = "conv_fake_1";
  auto a = create(s.proxy.port(), body, "a");
  auto b = create(s.proxy.port(), body, "b");
  REQUIRE(a.status == 200);
  REQUIRE(b.status == 200);
  CHECK(a.header("X-Reprise-Cache") == "bypass");
  CHECK(a.header("X-Reprise-Cache-Reason").find("conversation") != std::string::npos);
  CHECK(a.json()["id"] != b.json()["id"]);
  CHECK(calls(s.fake) == 2);
  CHECK(s.fake.stats()["last_request"]["body"]["conversation"] == "conv_fake_1");
}

TEST_CASE("responses: an answer cut by max_output_tokens is stored like chat's length; failures are not") {
  Stack s;
  s.fake.control({{"min_words", 20}, {"max_words", 24}});
  json body = request_body();
  body["max_output_tokens"] = 16;  // the fake's answers are longer: status incomplete
  auto cut = create(s.proxy.port(), body, "a");
  REQUIRE(cut.status == 200);
  CHECK(cut.json()["status"] == "incomplete");
  CHECK(cut.json()["incomplete_details"]["reason"] == "max_output_tokens");
  auto again = create(s.proxy.port(), body, "b", {{"X-Reprise-Cache", "only-cached"}});
  CHECK(again.status == 200);
  CHECK(again.json()["id"] == cut.json()["id"]);
  CHECK(calls(s.fake) == 1);
  // An upstream failure is not stored (a 400: not retried).
  s.fake.control({{"fail_next", 1}, {"fail_status", 400}, {"min_words", 4}, {"max_words", 8}});
  json other = request_body();
  other["input"] = "something else";
  auto failed = create(s.proxy.port(), other, "c", {{"X-Reprise-Cache", "use"}});
  CHECK(failed.status == 400);
  CHECK(create(s.proxy.port(), other, "c", {{"X-Reprise-Cache", "only-cached"}}).status == 504);
  // The upstream's own 400, in its shape, naming the parameter.
  auto invalid = create(s.proxy.port(), {{"model", "gpt-4.1-mini"}}, "a");
  CHECK(invalid.status == 400);
  CHECK(invalid.json()["error"]["param"] == "input");
}

TEST_CASE("responses: a model routed to an upstream of another kind is a 400 naming both") {
  ProxyConfig config;
  config.upstream = "kind = \"anthropic\"\n";
  Stack s(config);
  auto r = create(s.proxy.port(), request_body(), "a");
  CHECK(r.status == 400);
  const json error = r.json()["error"];
  CHECK(error["param"] == "model");
  const std::string message = error["message"];
  CHECK(message.find("\"anthropic\"") != std::string::npos);
  CHECK(message.find("\"openai\"") != std::string::npos);
  CHECK(message.find("Responses") != std::string::npos);
  CHECK(calls(s.fake) == 0);
}

TEST_CASE("responses: only-cached without a sample is a 504 in OpenAI's error shape") {
  Stack s;
  auto r = create(s.proxy.port(), request_body(), "a", {{"X-Reprise-Cache", "only-cached"}});
  CHECK(r.status == 504);
  const json error = r.json()["error"];
  CHECK(error["message"].is_string());
  CHECK(error["type"].is_string());
  CHECK(error.contains("param"));
  CHECK(error.contains("code"));
  CHECK(calls(s.fake) == 0);
}

TEST_CASE("responses: a deficit of d is d concurrent one-sample calls under one single flight") {
  ProxyConfig config;
  // Every request of a burst lands in one batch, ordered by its request id.
  config.tail = "\n[pipeline]\nbatch_window_ms = 1000\n";
  Stack s(config);
  s.fake.control({{"latency_ms", 1000}});
  const json body = request_body("Six drafts, please");
  // Six requests of one namespace: six samples, each its own call, all at once.
  auto burst = [&](const std::string& ns) {
    std::vector<std::future<Response>> answers;
    for (int i = 0; i < 6; ++i)
      answers.push_back(std::async(std::launch::async, [&, i] {
        return create(s.proxy.port(), body, ns, {{"X-Reprise-Request-Id", "req" + std::to_string(i)}});
      }));
    std::vector<std::string> ids;
    for (auto& answer : answers) {
      Response r = answer.get();
      REQUIRE_MESSAGE(r.status == 200, r.body);
      ids.push_back(r.json()["id"].get<std::string>());
    }
    return ids;
  };
  const auto started = std::chrono::steady_clock::now();
  const auto first = burst("a");
  const auto took = std::chrono::steady_clock::now() - started;
  CHECK(calls(s.fake) == 6);
  CHECK(std::set<std::string>(first.begin(), first.end()).size() == 6);
  // The batch window, then the calls: one after another they would take 1 + 6 x 1 s.
  CHECK(took < std::chrono::milliseconds(4500));
  // Replayed in another namespace: the same id for each request id, no call.
  CHECK(burst("b") == first);
  CHECK(calls(s.fake) == 6);
  // Two namespaces that both need the next samples at once share the calls.
  const json other = request_body("Two namespaces at once");
  auto in_c = std::async(std::launch::async, [&] { return create(s.proxy.port(), other, "c"); });
  auto in_d = std::async(std::launch::async, [&] { return create(s.proxy.port(), other, "d"); });
  Response c = in_c.get(), d = in_d.get();
  REQUIRE(c.status == 200);
  REQUIRE(d.status == 200);
  CHECK(c.json()["id"] == d.json()["id"]);
  CHECK(calls(s.fake) == 7);
}
