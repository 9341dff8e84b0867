// End to end through the real binary: the Gemini dialect (DESIGN.md section 9) in front
// of the fake's Gemini API (an [[upstreams]] entry of kind "gemini" at its /v1beta).
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

namespace {

const std::string kModel = "gemini-2.0-flash";

// The fake and a proxy whose models route to its Gemini API, except gpt-* (to an
// upstream of kind "openai": a dialect mismatch for Gemini's paths).
struct GeminiStack {
  explicit GeminiStack(std::vector<std::string> fake_args = {}, const std::string& cache_lines = "")
      : fake(dir, std::move(fake_args)), proxy(dir, config(dir, fake.port(), cache_lines)) {}

  static std::string config(const TempDir& dir, uint16_t port, const std::string& cache_lines) {
    const std::string host = "http://127.0.0.1:" + std::to_string(port);
    return "[server]\nlisten = \"127.0.0.1:0\"\nthreads = 2\n"
           "\n[admin]\nlisten = \"127.0.0.1:0\"\n"
           "\n[cache]\npath = \"" + (dir / "cache").string() + "\"\n" + cache_lines +
           "\n[[upstreams]]\nname = \"google\"\nkind = \"gemini\"\nbase_url = \"" + host + "/v1beta\"\n"
           "connect_timeout_ms = 2000\nfirst_byte_timeout_ms = 5000\nretry_backoff_ms = 10\n"
           "\n[[upstreams]]\nname = \"oai\"\nkind = \"openai\"\nbase_url = \"" + host + "/v1\"\n"
           "\n[[models]]\nmatch = \"gpt-*\"\nbackend = \"oai\"\n"
           "\n[[models]]\nmatch = \"*\"\nbackend = \"google\"\n";
  }
  int calls() { return fake.stats()["calls"].get<int>(); }

  TempDir dir;
  FakeUpstream fake;
  ProxyUnderTest proxy;
};

json body_of(const std::string& prompt, int candidates = 1) {
  json body = {{"contents", {{{"role", "user"}, {"parts", {{{"text", prompt}}}}}}},
               {"generationConfig", {{"temperature", 0.9}}}};
  if (candidates != 1) body["generationConfig"]["candidateCount"] = candidates;
  return body;
}

// POST .../models/{model}:generateContent or :streamGenerateContent?alt=sse, in a
// namespace given by the header (or, with ns_in_path, by /ns/{ns}/).
Response generate(uint16_t port, const std::string& ns, const json& body, bool stream = false, Headers headers = {},
                  const std::string& query = "", bool ns_in_path = false, const std::string& model = kModel) {
  std::string target = (ns_in_path ? "/ns/" + ns : std::string()) + "/v1beta/models/" + model +
                       (stream ? ":streamGenerateContent?alt=sse" : ":generateContent");
  if (!query.empty()) target += (stream ? "&" : "?") + query;
  if (!ns_in_path) headers.emplace_back("X-Reprise-Namespace", ns);
  return request(port, "POST", target, body.dump(), headers);
}

// Per candidate, its text parts joined (a JSON answer).
std::vector<std::string> texts(const Response& r) {
  std::vector<std::string> out;
  const json body = r.json();
  for (auto& candidate : body["candidates"]) {
    std::string text;
    for (auto& part : candidate["content"]["parts"])
      if (part.contains("text")) text += part["text"].get<std::string>();
    out.push_back(text);
  }
  return out;
}

// Per candidate index, its text pieces joined over the chunks (a stream, as a
// @google/genai user reads chunk.text per candidate); checks the stream's framing.
std::vector<std::string> stream_texts(const Response& r, std::vector<json>* chunks_out = nullptr) {
  CHECK(r.header("Content-Type").starts_with("text/event-stream"));
  bool done = false;
  std::string body = r.body;  // a relayed stream keeps Google's CRLF framing
  for (size_t at; (at = body.find("\r\n")) != std::string::npos;) body.erase(at, 1);
  auto chunks = sse_events(body, &done);
  CHECK_FALSE(done);  // Gemini streams have no [DONE]
  CHECK(r.body.find("event:") == std::string::npos);
  std::vector<std::string> out;
  for (auto& chunk : chunks)
    for (auto& candidate : chunk["candidates"]) {
      size_t i = candidate.value("index", 0u);
      if (out.size() <= i) out.resize(i + 1);
      for (auto& part : candidate["content"]["parts"])
        if (part.contains("text")) out[i] += part["text"].get<std::string>();
    }
  if (chunks_out) *chunks_out = chunks;
  return out;
}

void check_gemini_error(const Response& r, unsigned status, const char* name) {
  CHECK(r.status == status);
  json body = json::parse(r.body, nullptr, false);
  REQUIRE(body.is_object());
  REQUIRE(body.contains("error"));
  CHECK(body["error"]["code"] == status);
  CHECK(body["error"]["status"] == name);
  CHECK(body["error"]["message"].is_string());
}

}  // namespace

TEST_CASE("gemini: a JSON miss then a hit in a fresh namespace (header and path forms) with the same body") {
  GeminiStack s;
  auto miss = generate(s.proxy.port(), "first", body_of("Tell me a story"));
  REQUIRE(miss.status == 200);
  CHECK(miss.header("X-Reprise-Cache") == "miss");
  CHECK(s.calls() == 1);
  // The upstream got Gemini's own request: the model in the path, not in the body.
  json seen = s.fake.stats()["last_request"];
  CHECK(seen["target"] == "/v1beta/models/" + kModel + ":generateContent");
  CHECK_FALSE(seen["body"].contains("model"));
  json answer = miss.json();
  CHECK(answer["responseId"].is_string());
  CHECK(answer["modelVersion"] == kModel);
  CHECK(answer["candidates"][0]["finishReason"] == "STOP");
  CHECK(answer["usageMetadata"]["totalTokenCount"].get<int>() ==
        answer["usageMetadata"]["promptTokenCount"].get<int>() + answer["usageMetadata"]["candidatesTokenCount"].get<int>());

  auto hit = generate(s.proxy.port(), "second", body_of("Tell me a story"));
  REQUIRE(hit.status == 200);
  CHECK(hit.header("X-Reprise-Cache") == "hit");
  CHECK(hit.body == miss.body);
  auto path_hit = generate(s.proxy.port(), "third", body_of("Tell me a story"), false, {}, "", true);
  REQUIRE(path_hit.status == 200);
  CHECK(path_hit.header("X-Reprise-Namespace") == "third");
  CHECK(path_hit.body == miss.body);
  CHECK(s.calls() == 1);
  // In the same namespace the next sample is a fresh one.
  auto next = generate(s.proxy.port(), "first", body_of("Tell me a story"));
  REQUIRE(next.status == 200);
  CHECK(s.calls() == 2);
  CHECK(texts(next) != texts(miss));
  CHECK(next.json()["responseId"] != answer["responseId"]);
  // bypass: relayed as it came, nothing read or stored.
  auto bypass = generate(s.proxy.port(), "second", body_of("Tell me a story"), true, {{"X-Reprise-Cache", "bypass"}});
  REQUIRE(bypass.status == 200);
  CHECK(bypass.header("X-Reprise-Cache") == "bypass");
  CHECK(s.calls() == 3);
  CHECK_FALSE(stream_texts(bypass).empty());
}

TEST_CASE("gemini: a streamed miss then a streamed hit with the same text per candidate") {
  GeminiStack s;
  auto miss = generate(s.proxy.port(), "a", body_of("Stream me something", 2), true);
  REQUIRE(miss.status == 200);
  CHECK(miss.header("X-Reprise-Cache") == "miss");
  CHECK(s.calls() == 1);
  json seen = s.fake.stats()["last_request"];
  CHECK(seen["target"] == "/v1beta/models/" + kModel + ":streamGenerateContent?alt=sse");
  CHECK(seen["body"]["generationConfig"]["candidateCount"] == 2);
  std::vector<json> miss_chunks, hit_chunks;
  auto first = stream_texts(miss, &miss_chunks);
  REQUIRE(first.size() == 2);
  CHECK(first[0] != first[1]);
  CHECK_FALSE(first[0].empty());

  auto hit = generate(s.proxy.port(), "b", body_of("Stream me something", 2), true);
  REQUIRE(hit.status == 200);
  CHECK(hit.header("X-Reprise-Cache") == "hit");
  CHECK(s.calls() == 1);
  CHECK(stream_texts(hit, &hit_chunks) == first);
  REQUIRE_FALSE(hit_chunks.empty());
  CHECK(hit_chunks.front()["responseId"] == miss_chunks.front()["responseId"]);
  // The usage rides on the last chunk, with every candidate's finishReason before it.
  CHECK(hit_chunks.back().contains("usageMetadata"));
  CHECK(hit_chunks.back()["usageMetadata"]["candidatesTokenCount"].get<int>() > 0);
  int finishes = 0;
  for (auto& chunk : hit_chunks)
    for (auto& candidate : chunk["candidates"]) finishes += candidate.contains("finishReason");
  CHECK(finishes == 2);
}

TEST_CASE("gemini: candidateCount 3 is three samples; candidateCount 1 three times replays them in order") {
  GeminiStack s;
  auto three = generate(s.proxy.port(), "many", body_of("Name a colour", 3));
  REQUIRE(three.status == 200);
  CHECK(three.header("X-Reprise-Samples") == "0-2");
  CHECK(s.calls() == 1);
  CHECK(s.fake.stats()["samples"] == 3);
  auto all = texts(three);
  REQUIRE(all.size() == 3);
  for (int i = 0; i < 3; ++i) {
    auto one = generate(s.proxy.port(), "one-by-one", body_of("Name a colour"));
    REQUIRE(one.status == 200);
    CHECK(one.header("X-Reprise-Cache") == "hit");
    CHECK(one.header("X-Reprise-Samples") == std::to_string(i) + "-" + std::to_string(i));
    CHECK(texts(one) == std::vector<std::string>{all[size_t(i)]});
  }
  CHECK(s.calls() == 1);
  // A fourth is one new call for one candidate.
  auto fourth = generate(s.proxy.port(), "one-by-one", body_of("Name a colour"));
  REQUIRE(fourth.status == 200);
  CHECK(s.calls() == 2);
  CHECK_FALSE(s.fake.stats()["last_request"]["body"]["generationConfig"].contains("candidateCount"));
}

TEST_CASE("gemini: a stream served from JSON samples and JSON from streamed samples") {
  GeminiStack s;
  auto json_miss = generate(s.proxy.port(), "j1", body_of("First prompt", 2));
  REQUIRE(json_miss.status == 200);
  std::vector<json> chunks;
  auto as_stream = generate(s.proxy.port(), "j2", body_of("First prompt", 2), true);
  REQUIRE(as_stream.status == 200);
  CHECK(as_stream.header("X-Reprise-Cache") == "hit");
  CHECK(stream_texts(as_stream, &chunks) == texts(json_miss));
  CHECK(chunks.front()["responseId"] == json_miss.json()["responseId"]);
  CHECK(chunks.back()["usageMetadata"] == json_miss.json()["usageMetadata"]);

  auto stream_miss = generate(s.proxy.port(), "s1", body_of("Second prompt", 2), true);
  REQUIRE(stream_miss.status == 200);
  auto as_json = generate(s.proxy.port(), "s2", body_of("Second prompt", 2));
  REQUIRE(as_json.status == 200);
  CHECK(as_json.header("X-Reprise-Cache") == "hit");
  std::vector<json> streamed_chunks;
  CHECK(texts(as_json) == stream_texts(stream_miss, &streamed_chunks));
  CHECK(as_json.json()["responseId"] == streamed_chunks.front()["responseId"]);
  CHECK(as_json.json()["usageMetadata"] == streamed_chunks.back()["usageMetadata"]);
  CHECK(s.calls() == 2);
}

TEST_CASE("gemini: a function-calling agent loop replays turn after turn with zero calls") {
  GeminiStack s;
  json turn1 = body_of("What is the weather in Paris?");
  turn1["tools"] = json::parse(R"([{"functionDeclarations": [{"name": "get_weather", "description": "The weather in a city",
      "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}])");
  auto run = [&](const std::string& ns, bool stream_first) {
    std::vector<std::string> bodies;
    json call;
    auto r1 = generate(s.proxy.port(), ns, turn1, stream_first);
    REQUIRE(r1.status == 200);
    if (stream_first) {
      std::vector<json> chunks;
      stream_texts(r1, &chunks);
      for (auto& chunk : chunks)
        for (auto& part : chunk["candidates"][0]["content"]["parts"])
          if (part.contains("functionCall")) call = part["functionCall"];
    } else {
      bodies.push_back(r1.body);
      const json answer = r1.json();
      for (auto& part : answer["candidates"][0]["content"]["parts"])
        if (part.contains("functionCall")) call = part["functionCall"];
    }
    REQUIRE(call.is_object());
    CHECK(call["name"] == "get_weather");
    CHECK(call["args"]["city"].is_string());
    json turn2 = turn1;
    turn2["contents"].push_back({{"role", "model"}, {"parts", json::array({{{"functionCall", call}}})}});
    turn2["contents"].push_back(json::parse(
        R"({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"forecast": "sunny"}}}]})"));
    auto r2 = generate(s.proxy.port(), ns, turn2);
    REQUIRE(r2.status == 200);
    const json parts = r2.json()["candidates"][0]["content"]["parts"];
    CHECK(parts.size() == 1);  // answered in text, no second call
    CHECK(parts[0]["text"].is_string());
    bodies.push_back(r2.body);
    return std::make_pair(call, bodies);
  };
  auto [call, first] = run("agent-1", false);
  CHECK(s.calls() == 2);
  auto [replayed_call, again] = run("agent-2", false);
  CHECK(s.calls() == 2);
  CHECK(again == first);  // both turns' bodies, ids included
  CHECK(replayed_call == call);
  auto [streamed_call, streamed] = run("agent-3", true);  // turn 1 streamed from the stored sample
  CHECK(s.calls() == 2);
  CHECK(streamed_call == call);
  CHECK(streamed.back() == first.back());
}

TEST_CASE("gemini: ?key= and x-goog-api-key are separate tenants and the key is never echoed") {
  const std::string key = "AIzaFakeKey0123456789";
  GeminiStack s({"--require-key", key});
  auto by_query = generate(s.proxy.port(), "k", body_of("Who are you?"), false, {}, "key=" + key);
  REQUIRE(by_query.status == 200);
  CHECK(s.calls() == 1);
  CHECK(s.fake.stats()["last_request"]["target"].get<std::string>().find("key=" + key) != std::string::npos);
  auto by_header = generate(s.proxy.port(), "k", body_of("Who are you?"), false, {{"x-goog-api-key", key}});
  REQUIRE(by_header.status == 200);
  CHECK(by_header.header("X-Reprise-Cache") == "miss");  // another tenant: its own list
  CHECK(s.calls() == 2);
  CHECK(s.fake.stats()["last_request"]["headers"]["x-goog-api-key"] == key);
  // Each tenant finds its own sample in a fresh namespace.
  auto again = generate(s.proxy.port(), "k2", body_of("Who are you?"), true, {}, "key=" + key);
  REQUIRE(again.status == 200);
  CHECK(again.header("X-Reprise-Cache") == "hit");
  CHECK(stream_texts(again) == texts(by_query));
  CHECK(s.calls() == 2);
  for (const Response* r : {&by_query, &by_header, &again}) {
    CHECK(r->body.find(key) == std::string::npos);
    for (auto& field : r->headers) CHECK(std::string(field.value()).find(key) == std::string::npos);
  }
  // A wrong key: the upstream's 401, in Gemini's shape.
  auto wrong = generate(s.proxy.port(), "k", body_of("Who are you?"), false, {}, "key=wrong");
  check_gemini_error(wrong, 401, "UNAUTHENTICATED");
}

TEST_CASE("gemini: errors in Gemini's shape - a kind mismatch and only-cached and invalid requests") {
  GeminiStack s;
  auto mismatch = generate(s.proxy.port(), "e", body_of("Hello"), false, {}, "", false, "gpt-4o-mini");
  check_gemini_error(mismatch, 400, "INVALID_ARGUMENT");
  const std::string message = mismatch.json()["error"]["message"];
  CHECK(message.find("\"openai\"") != std::string::npos);
  CHECK(message.find("\"gemini\"") != std::string::npos);

  auto not_cached = generate(s.proxy.port(), "e", body_of("Never asked"), false, {{"X-Reprise-Cache", "only-cached"}});
  check_gemini_error(not_cached, 504, "DEADLINE_EXCEEDED");
  auto not_cached_stream =
      generate(s.proxy.port(), "e", body_of("Never asked"), true, {{"X-Reprise-Cache", "only-cached"}});
  check_gemini_error(not_cached_stream, 504, "DEADLINE_EXCEEDED");

  auto no_contents = generate(s.proxy.port(), "e", json{{"generationConfig", json::object()}});
  check_gemini_error(no_contents, 400, "INVALID_ARGUMENT");
  auto bad_count = generate(s.proxy.port(), "e", body_of("Hello", 9));
  check_gemini_error(bad_count, 400, "INVALID_ARGUMENT");
  CHECK(s.calls() == 0);

  // A candidate stopped for safety is relayed as the failure it is, and not stored.
  s.fake.control({{"finish_reason", "SAFETY"}});
  auto unsafe = generate(s.proxy.port(), "e", body_of("Something unsafe"));
  check_gemini_error(unsafe, 502, "INTERNAL");
  s.fake.control({{"finish_reason", nullptr}});
  auto retried = generate(s.proxy.port(), "e", body_of("Something unsafe"));
  REQUIRE(retried.status == 200);
  CHECK(retried.header("X-Reprise-Cache") == "miss");
  CHECK(s.calls() == 2);
}

TEST_CASE("gemini: labels and [cache.key_ignore] gemini paths are forwarded but not keyed") {
  GeminiStack s({}, "[cache.key_ignore]\ngemini = [\"systemInstruction\"]\n");
  json first = body_of("Summarise the news");
  first["systemInstruction"] = {{"parts", {{{"text", "session 1"}}}}};
  first["labels"] = {{"run", "1"}};
  auto miss = generate(s.proxy.port(), "x", first);
  REQUIRE(miss.status == 200);
  json seen = s.fake.stats()["last_request"]["body"];
  CHECK(seen["systemInstruction"] == first["systemInstruction"]);
  CHECK(seen["labels"] == first["labels"]);
  json second = first;
  second["systemInstruction"]["parts"][0]["text"] = "session 2";
  second["labels"]["run"] = "2";
  auto hit = generate(s.proxy.port(), "y", second);
  REQUIRE(hit.status == 200);
  CHECK(hit.header("X-Reprise-Cache") == "hit");
  CHECK(hit.body == miss.body);
  CHECK(s.calls() == 1);
  // What is not ignored still shapes the key.
  json other = first;
  other["generationConfig"]["topK"] = 5;
  auto other_miss = generate(s.proxy.port(), "y", other);
  REQUIRE(other_miss.status == 200);
  CHECK(other_miss.header("X-Reprise-Cache") == "miss");
  CHECK(s.calls() == 2);
}
