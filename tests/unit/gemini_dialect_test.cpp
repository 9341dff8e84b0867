// The Gemini dialect (proxy/dialects/gemini.cpp): its canonical request, the samples of
// an answer (whole and streamed), its rendering (JSON and alt=sse chunks) and its
// error shape, as pure functions.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxy/dialect.hpp"
#include "proxy/openai_format.hpp"

using namespace reprise;
using nlohmann::json;

namespace {

const Dialect& gemini() { return dialect_of(cache::Endpoint::gemini); }

json J(const char* text) { return json::parse(text); }

std::string context(const std::string& model, bool stream = false) {
  return gemini().key_context(http::fields{}, model, stream);
}

cache::CanonicalRequest canonical(const json& body, const std::string& ctx, const std::vector<std::string>& ignore = {}) {
  auto out = gemini().canonicalize(body.dump(), ctx, ignore);
  REQUIRE_MESSAGE(out.ok(), (out.ok() ? "" : out.error().message));
  return out.value();
}

const json kBody = J(R"({
  "contents": [{"role": "user", "parts": [{"text": "Tell me a story"}]}],
  "systemInstruction": {"parts": [{"text": "Be brief"}]},
  "generationConfig": {"temperature": 0.7, "maxOutputTokens": 64}
})");

// An answer of two candidates as the API writes it (index 0 left out, as proto3 does).
const json kAnswer = J(R"({
  "candidates": [
    {"content": {"parts": [{"text": "Once upon a time"}], "role": "model"}, "finishReason": "STOP",
     "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]},
    {"content": {"parts": [{"text": "There was a cat who sat"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 1}
  ],
  "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 10, "totalTokenCount": 17,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 7}]},
  "modelVersion": "gemini-2.0-flash-001",
  "responseId": "abcResponse123"
})");

std::shared_ptr<cache::Generation> generation(uint32_t size, bool stream = true) {
  auto request = std::make_shared<const cache::CanonicalRequest>(canonical(kBody, context("gemini-2.0-flash", stream)));
  return std::make_shared<cache::Generation>(request, cache::Endpoint::gemini, size, stream, nullptr);
}

// The data of each "data: " event of an SSE text.
std::vector<std::string> sse_data(const std::string& text) {
  format::SseParser parser;
  std::vector<std::string> events;
  parser.feed(text, events);
  return events;
}

// Runs a stream through a fresh reader; the samples or the reason.
Expected<std::vector<cache::Sample>, std::string> read_stream(const std::vector<std::string>& events, uint32_t size,
                                                              std::shared_ptr<cache::Generation>* out_gen = nullptr) {
  auto gen = generation(size);
  auto reader = gemini().stream_reader(*gen, "up");
  for (auto& data : events) {
    auto fault = reader->on_event(data);
    REQUIRE_FALSE(fault.has_value());
  }
  if (out_gen) *out_gen = gen;
  return reader->finish();
}

std::vector<const cache::Sample*> pointers(const std::vector<cache::Sample>& samples) {
  std::vector<const cache::Sample*> out;
  for (auto& s : samples) out.push_back(&s);
  return out;
}

// How a @google/genai user reads a stream for one candidate: its text parts'
// strings concatenated (chunk.text), its functionCall parts collected.
std::string streamed_text(const std::vector<json>& chunks, size_t index) {
  std::string text;
  for (auto& chunk : chunks)
    for (auto& candidate : chunk.value("candidates", json::array()))
      if (candidate.value("index", 0u) == index)
        for (auto& part : candidate["content"]["parts"])
          if (part.contains("text") && !part.value("thought", false)) text += part["text"].get<std::string>();
  return text;
}

}  // namespace

TEST_CASE("gemini: candidateCount is out of the key - the model and stream come from the path") {
  json three = kBody;
  three["generationConfig"]["candidateCount"] = 3;
  auto a = canonical(kBody, context("gemini-2.0-flash"));
  auto b = canonical(three, context("gemini-2.0-flash", true));
  CHECK(a.text == b.text);
  CHECK(a.sha256 == b.sha256);
  CHECK(a.n == 1);
  CHECK(b.n == 3);
  CHECK_FALSE(a.stream);
  CHECK(b.stream);
  CHECK(a.model == "gemini-2.0-flash");
  CHECK(a.body["model"] == "gemini-2.0-flash");
  CHECK_FALSE(a.body["generationConfig"].contains("candidateCount"));
  REQUIRE(a.temperature.has_value());
  CHECK(*a.temperature == doctest::Approx(0.7));
  // Another model is another key; a "model" in the body cannot override the path.
  CHECK(canonical(kBody, context("gemini-2.5-pro")).text != a.text);
  json lying = kBody;
  lying["model"] = "gemini-2.5-pro";
  CHECK(canonical(lying, context("gemini-2.0-flash")).text == a.text);
  // Everything that shapes a sample stays in.
  for (const char* field : {"contents", "systemInstruction", "generationConfig"}) CHECK(a.body.contains(field));
  json tools = kBody;
  tools["tools"] = J(R"([{"functionDeclarations": [{"name": "lookup"}]}])");
  CHECK(canonical(tools, context("gemini-2.0-flash")).text != a.text);
  json other_config = kBody;
  other_config["generationConfig"]["topK"] = 3;
  CHECK(canonical(other_config, context("gemini-2.0-flash")).text != a.text);
  // Only candidateCount in generationConfig: the same as none.
  json only_count = kBody;
  only_count.erase("generationConfig");
  json with_count = only_count;
  with_count["generationConfig"] = {{"candidateCount", 2}};
  CHECK(canonical(only_count, context("m")).text == canonical(with_count, context("m")).text);
}

TEST_CASE("gemini: upstream_body strips the model and sends candidateCount = n - labels are forwarded but not keyed") {
  json labelled = kBody;
  labelled["labels"] = {{"run", "42"}};
  auto a = canonical(kBody, context("gemini-2.0-flash"));
  auto b = canonical(labelled, context("gemini-2.0-flash"));
  CHECK(a.text == b.text);
  CHECK(a.forward.is_null());
  json up = gemini().upstream_body(b, 3, false);
  CHECK_FALSE(up.contains("model"));
  CHECK(up["labels"] == labelled["labels"]);
  CHECK(up["generationConfig"]["candidateCount"] == 3);
  CHECK(up["generationConfig"]["temperature"] == 0.7);
  json one = gemini().upstream_body(a, 1, true);
  CHECK_FALSE(one.contains("model"));
  CHECK_FALSE(one["generationConfig"].contains("candidateCount"));
  CHECK(one["contents"] == kBody["contents"]);
}

TEST_CASE("gemini: ignore paths leave the key but are still forwarded") {
  json a = kBody, b = kBody;
  a["systemInstruction"]["parts"][0]["text"] = "session 1";
  b["systemInstruction"]["parts"][0]["text"] = "session 2";
  const std::vector<std::string> ignore = {"systemInstruction.parts.0"};
  auto ca = canonical(a, context("m"), ignore), cb = canonical(b, context("m"), ignore);
  CHECK(ca.text == cb.text);
  CHECK(canonical(a, context("m")).text != canonical(b, context("m")).text);
  CHECK(gemini().upstream_body(ca, 1, false)["systemInstruction"] == a["systemInstruction"]);
  CHECK(gemini().upstream_body(cb, 1, false)["systemInstruction"] == b["systemInstruction"]);
}

TEST_CASE("gemini: the canonical text read back with no context is itself (export and import)") {
  json three = kBody;
  three["generationConfig"]["candidateCount"] = 3;
  auto first = canonical(three, context("gemini-2.0-flash", true));
  auto again = gemini().canonicalize(first.text, "", {});
  REQUIRE(again.ok());
  CHECK(again.value().text == first.text);
  CHECK(again.value().model == "gemini-2.0-flash");
  CHECK(again.value().n == 1);
  // Through the cache's own entry point, as the export reader calls it.
  register_dialects({}, {}, {});
  auto via_cache = cache::canonicalize_text(cache::Endpoint::gemini, first.text);
  REQUIRE(via_cache.ok());
  CHECK(via_cache.value().text == first.text);
}

TEST_CASE("gemini: malformed requests are refused with the parameter named") {
  auto refused = [](const json& body, const std::string& param) {
    auto out = gemini().canonicalize(body.dump(), context("m"), {});
    REQUIRE_FALSE(out.ok());
    CHECK(out.error().param == param);
  };
  refused(J(R"({"generationConfig": {}})"), "contents");
  refused(J(R"({"contents": "hello"})"), "contents");
  refused(J(R"({"contents": []})"), "contents");
  json nine = kBody;
  nine["generationConfig"]["candidateCount"] = 9;
  refused(nine, "generationConfig.candidateCount");
  json zero = kBody;
  zero["generationConfig"]["candidateCount"] = 0;
  refused(zero, "generationConfig.candidateCount");
  CHECK_FALSE(gemini().canonicalize(kBody.dump(), "", {}).ok());  // no model anywhere
}

TEST_CASE("gemini: cachedContent is server-side state: relayed uncached") {
  json cached = kBody;
  cached["cachedContent"] = "cachedContents/abc";
  CHECK(gemini().uncacheable(canonical(cached, context("m"))).has_value());
  CHECK_FALSE(gemini().uncacheable(canonical(kBody, context("m"))).has_value());
}

TEST_CASE("gemini: upstream_target keeps the client's key= and frames the stream with alt=sse") {
  auto request = canonical(kBody, context("gemini-2.0-flash"));
  CHECK(gemini().upstream_target(request, false, "") == "/models/gemini-2.0-flash:generateContent");
  CHECK(gemini().upstream_target(request, true, "") == "/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
  CHECK(gemini().upstream_target(request, false, "key=AIza123") == "/models/gemini-2.0-flash:generateContent?key=AIza123");
  CHECK(gemini().upstream_target(request, true, "alt=sse&key=AIza123") ==
        "/models/gemini-2.0-flash:streamGenerateContent?key=AIza123&alt=sse");
  // A stream asked for by a JSON client's path (or the reverse) gets the framing the proxy reads.
  CHECK(gemini().upstream_target(request, false, "key=k&alt=sse") == "/models/gemini-2.0-flash:generateContent?key=k");
  CHECK(gemini().upstream_target(request, true, "alt=json") == "/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
}

TEST_CASE("gemini: samples_from_json takes exactly n complete candidates and json_body gives the answer back") {
  auto samples = gemini().samples_from_json(kAnswer, 2, "up");
  REQUIRE(samples.ok());
  auto& s = samples.value();
  REQUIRE(s.size() == 2);
  CHECK(s[0].choice == kAnswer["candidates"][0]);
  json second = kAnswer["candidates"][1];
  second.erase("index");
  CHECK(s[1].choice == second);
  CHECK(s[0].finish_reason == "STOP");
  CHECK(s[1].finish_reason == "MAX_TOKENS");
  CHECK(s[0].prompt_tokens == 7);
  CHECK(s[0].completion_tokens + s[1].completion_tokens == 10);
  CHECK(s[0].completion_tokens < s[1].completion_tokens);  // in proportion to their lengths
  CHECK(s[0].model == "gemini-2.0-flash-001");
  CHECK(s[0].backend == "up");
  CHECK(s[0].response_extra == J(R"({"modelVersion": "gemini-2.0-flash-001", "responseId": "abcResponse123"})"));
  // The answer rebuilt from its samples: the same object, usage and ids exactly.
  json expected = kAnswer;
  expected["candidates"][0]["index"] = 0;
  json body = json::parse(gemini().json_body(pointers(s), RenderOptions{cache::Endpoint::gemini, false, false, "float", ""}));
  CHECK(body == expected);
  // One of them alone: its own share of the tokens, the prompt once.
  json alone = json::parse(gemini().json_body({&s[1]}, RenderOptions{cache::Endpoint::gemini, false, false, "float", ""}));
  CHECK(alone["candidates"].size() == 1);
  CHECK(alone["candidates"][0]["index"] == 0);
  CHECK(alone["usageMetadata"]["candidatesTokenCount"] == s[1].completion_tokens);
  CHECK(alone["usageMetadata"]["totalTokenCount"] == 7 + s[1].completion_tokens);
  CHECK(alone["responseId"] == "abcResponse123");
}

TEST_CASE("gemini: samples_from_json refuses what is no complete answer") {
  auto refused = [](json answer, uint32_t n) {
    auto out = gemini().samples_from_json(answer, n, "up");
    CHECK_FALSE(out.ok());
  };
  REQUIRE(gemini().samples_from_json(kAnswer, 2, "up").ok());  // the same answer ended well is taken
  for (const char* reason : {"SAFETY", "RECITATION", "OTHER", "MALFORMED_FUNCTION_CALL", "BLOCKLIST"}) {
    json answer = kAnswer;
    answer["candidates"][1]["finishReason"] = reason;
    refused(answer, 2);
  }
  json missing = kAnswer;
  missing["candidates"][0].erase("finishReason");
  refused(missing, 2);
  refused(kAnswer, 3);  // fewer than asked
  refused(kAnswer, 1);  // more than asked
  json repeated = kAnswer;
  repeated["candidates"][1]["index"] = 0;
  refused(repeated, 2);
  refused(J(R"({"promptFeedback": {"blockReason": "SAFETY"}})"), 1);  // a blocked prompt has no candidates
}

TEST_CASE("gemini: a stream read chunk by chunk gives the JSON answer's candidates") {
  // As the API streams it: the candidates taking turns, index 0 left out, usage on
  // every chunk and whole on the last, the finishReason on each candidate's last chunk.
  std::vector<std::string> events = {
      R"({"candidates":[{"content":{"parts":[{"text":"Once"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7},"modelVersion":"gemini-2.0-flash-001","responseId":"abcResponse123"})",
      R"({"candidates":[{"content":{"parts":[{"text":"There"}],"role":"model"},"index":1}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7},"modelVersion":"gemini-2.0-flash-001","responseId":"abcResponse123"})",
      R"({"candidates":[{"content":{"parts":[{"text":" upon a time"}],"role":"model"},"finishReason":"STOP","safetyRatings":[{"category":"HARM_CATEGORY_HARASSMENT","probability":"NEGLIGIBLE"}]}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7},"modelVersion":"gemini-2.0-flash-001","responseId":"abcResponse123"})",
      R"({"candidates":[{"content":{"parts":[{"text":" was a cat"}],"role":"model"},"index":1}],"modelVersion":"gemini-2.0-flash-001","responseId":"abcResponse123"})",
      R"({"candidates":[{"content":{"parts":[{"text":" who sat"}],"role":"model"},"finishReason":"MAX_TOKENS","index":1}],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":10,"totalTokenCount":17,"promptTokensDetails":[{"modality":"TEXT","tokenCount":7}]},"modelVersion":"gemini-2.0-flash-001","responseId":"abcResponse123"})",
  };
  std::shared_ptr<cache::Generation> gen;
  auto streamed = read_stream(events, 2, &gen);
  REQUIRE(streamed.ok());
  auto whole = gemini().samples_from_json(kAnswer, 2, "up");
  REQUIRE(whole.ok());
  for (size_t i = 0; i < 2; ++i) {
    CHECK(streamed.value()[i].choice == whole.value()[i].choice);
    CHECK(streamed.value()[i].completion_tokens == whole.value()[i].completion_tokens);
    CHECK(streamed.value()[i].response_extra == whole.value()[i].response_extra);
  }
  CHECK(gemini().json_body(pointers(streamed.value()), {}) == gemini().json_body(pointers(whole.value()), {}));
  // Every chunk went to the waiting clients, by candidate.
  std::vector<cache::Generation::Event> published;
  gen->read_events(0, 100, published);
  REQUIRE(published.size() == 5);
  CHECK(published[1].choice == 1);
  CHECK(published[0].delta["candidate"]["content"]["parts"][0]["text"] == "Once");
  CHECK(gen->response_extra()["responseId"] == "abcResponse123");
}

TEST_CASE("gemini: a stream keeps function calls and thoughts and refuses what did not end well") {
  std::vector<std::string> calls = {
      R"({"candidates":[{"content":{"parts":[{"text":"Let me think","thought":true}],"role":"model"}}],"responseId":"r1"})",
      R"({"candidates":[{"content":{"parts":[{"text":" about it.","thought":true}],"role":"model"}}],"responseId":"r1"})",
      R"({"candidates":[{"content":{"parts":[{"text":"Looking it up."}],"role":"model"}}],"responseId":"r1"})",
      R"({"candidates":[{"content":{"parts":[{"functionCall":{"name":"lookup","args":{"q":"cats"}},"thoughtSignature":"c2ln"}],"role":"model"},"finishReason":"STOP"}],"responseId":"r1"})",
  };
  auto samples = read_stream(calls, 1);
  REQUIRE(samples.ok());
  CHECK(samples.value()[0].choice == J(R"({"content":{"parts":[
      {"text":"Let me think about it.","thought":true},
      {"text":"Looking it up."},
      {"functionCall":{"name":"lookup","args":{"q":"cats"}},"thoughtSignature":"c2ln"}],"role":"model"},
      "finishReason":"STOP"})"));

  // Cut short, or ended by a safety stop: nothing to store.
  CHECK_FALSE(read_stream({calls[0], calls[2]}, 1).ok());
  CHECK_FALSE(read_stream({R"({"candidates":[{"content":{"parts":[{"text":"no"}],"role":"model"},"finishReason":"SAFETY"}]})"}, 1)
                  .ok());
  CHECK_FALSE(read_stream({R"({"candidates":[{"content":{"parts":[{"text":"a"}],"role":"model"},"finishReason":"STOP"}]})"}, 2)
                  .ok());  // candidate 1 never came

  // An error inside the stream is relayed as the upstream said it.
  auto gen = generation(1);
  auto reader = gemini().stream_reader(*gen, "up");
  auto fault = reader->on_event(R"({"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}})");
  REQUIRE(fault.has_value());
  REQUIRE(fault->reported.has_value());
  CHECK(fault->reported->status == 503);
  CHECK(json::parse(fault->reported->body)["error"]["status"] == "UNAVAILABLE");
  auto bad = gemini().stream_reader(*gen, "up")->on_event("not json");
  REQUIRE(bad.has_value());
  CHECK_FALSE(bad->malformed.empty());
}

TEST_CASE("gemini: a replayed candidate streams back into the stored candidate with the usage on the last chunk") {
  const json stored = J(R"({"content":{"parts":[
      {"text":"Thinking about the question first.","thought":true},
      {"text":"The answer is forty two, as always."},
      {"functionCall":{"name":"lookup","args":{"q":"42"}}},
      {"text":"","thoughtSignature":"c2lnbmF0dXJl"}],"role":"model"},
    "finishReason":"STOP","avgLogprobs":-0.5,
    "safetyRatings":[{"category":"HARM_CATEGORY_HARASSMENT","probability":"NEGLIGIBLE"}]})");
  cache::Sample sample;
  sample.choice = stored;
  sample.finish_reason = "STOP";
  sample.prompt_tokens = 9;
  sample.completion_tokens = 12;
  sample.model = "gemini-2.5-flash";
  sample.response_extra = {{"modelVersion", "gemini-2.5-flash"}, {"responseId", "stored-id-1"}};
  cache::Sample other = sample;
  other.choice = J(R"({"content":{"parts":[{"text":"Short."}],"role":"model"},"finishReason":"MAX_TOKENS"})");
  other.finish_reason = "MAX_TOKENS";
  other.completion_tokens = 2;

  auto renderer = gemini().stream_renderer(RenderOptions{cache::Endpoint::gemini, true, false, "float", ""});
  std::string out;
  renderer->replay(out, 0, sample);
  renderer->replay(out, 1, other);
  renderer->finish(out, {&sample, &other});
  CHECK(out.find("[DONE]") == std::string::npos);
  CHECK(out.find("event:") == std::string::npos);
  auto events = sse_data(out);
  std::vector<json> chunks;
  for (auto& e : events) chunks.push_back(json::parse(e));
  REQUIRE(chunks.size() > 8);  // a chunk per token of text
  for (auto& chunk : chunks) {
    CHECK(chunk["responseId"] == "stored-id-1");
    CHECK(chunk["modelVersion"] == "gemini-2.5-flash");
    CHECK(chunk["candidates"].size() == 1);
  }
  // Only the last chunk carries the usage, that of the whole response.
  for (size_t i = 0; i + 1 < chunks.size(); ++i) CHECK_FALSE(chunks[i].contains("usageMetadata"));
  CHECK(chunks.back()["usageMetadata"] == J(R"({"promptTokenCount":9,"candidatesTokenCount":14,"totalTokenCount":23})"));
  CHECK(streamed_text(chunks, 0) == "The answer is forty two, as always.");
  CHECK(streamed_text(chunks, 1) == "Short.");

  // The proxy's own reader (as the SDK puts a stream together) gives the stored candidates.
  auto read = read_stream(events, 2);
  REQUIRE(read.ok());
  CHECK(read.value()[0].choice == stored);
  CHECK(read.value()[1].choice == other.choice);
}

TEST_CASE("gemini: live chunks are re-indexed to the client's slot with the generation's head") {
  auto gen = generation(2);
  auto reader = gemini().stream_reader(*gen, "up");
  REQUIRE_FALSE(reader->on_event(
      R"({"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"index":1}],"modelVersion":"m-001","responseId":"live-1"})"));
  REQUIRE_FALSE(reader->on_event(
      R"({"candidates":[{"content":{"parts":[{"text":" there"}],"role":"model"},"finishReason":"STOP","index":1}],"responseId":"live-1"})"));
  std::vector<cache::Generation::Event> published;
  gen->read_events(0, 10, published);
  REQUIRE(published.size() == 2);
  auto renderer = gemini().stream_renderer(RenderOptions{cache::Endpoint::gemini, true, false, "float", ""});
  std::string out;
  renderer->live(out, 0, *gen, published[0].delta);
  renderer->live(out, 0, *gen, published[1].delta);
  cache::Sample s;
  s.prompt_tokens = 3;
  s.completion_tokens = 2;
  renderer->finish(out, {&s});
  auto events = sse_data(out);
  REQUIRE(events.size() == 2);
  json first = json::parse(events[0]), last = json::parse(events[1]);
  CHECK(first["candidates"][0]["index"] == 0);
  CHECK(first["responseId"] == "live-1");
  CHECK(first["modelVersion"] == "m-001");
  CHECK(last["candidates"][0]["finishReason"] == "STOP");
  CHECK(last["usageMetadata"]["totalTokenCount"] == 5);
}

TEST_CASE("gemini: error bodies in Gemini's shape - converted from OpenAI's or kept") {
  const std::string own = R"({"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT"}})";
  CHECK(gemini().error_body(400, own) == own);
  struct Case {
    unsigned status;
    const char* name;
  };
  for (Case c : {Case{400, "INVALID_ARGUMENT"}, Case{401, "UNAUTHENTICATED"}, Case{403, "PERMISSION_DENIED"},
                 Case{404, "NOT_FOUND"}, Case{429, "RESOURCE_EXHAUSTED"}, Case{503, "UNAVAILABLE"},
                 Case{504, "DEADLINE_EXCEEDED"}, Case{500, "INTERNAL"}, Case{502, "INTERNAL"}}) {
    const std::string openai = R"({"error":{"message":"something failed","type":"invalid_request_error","param":null,"code":null}})";
    json body = json::parse(gemini().error_body(c.status, openai));
    CHECK(body == json{{"error", {{"code", c.status}, {"message", "something failed"}, {"status", c.name}}}});
  }
  json raw = json::parse(gemini().error_body(502, "upstream exploded"));
  CHECK(raw["error"]["status"] == "INTERNAL");
  CHECK(raw["error"]["message"] == "upstream exploded");
}

TEST_CASE("gemini: the engine gets an OpenAI chat body; what it cannot say is a 400") {
  json body = kBody;
  body["contents"].push_back(J(R"({"role":"model","parts":[{"text":"Once"}]})"));
  body["contents"].push_back(J(R"({"role":"user","parts":[{"text":"Go "},{"text":"on"}]})"));
  body["generationConfig"]["topP"] = 0.9;
  body["generationConfig"]["stopSequences"] = {"END"};
  auto chat = gemini().engine_chat_body(canonical(body, context("local")));
  REQUIRE(chat.ok());
  CHECK(chat.value() == J(R"({"messages":[{"role":"system","content":"Be brief"},{"role":"user","content":"Tell me a story"},
      {"role":"assistant","content":"Once"},{"role":"user","content":"Go on"}],
      "temperature":0.7,"top_p":0.9,"max_tokens":64,"stop":["END"]})"));
  json call = kBody;
  call["contents"].push_back(J(R"({"role":"model","parts":[{"functionCall":{"name":"f","args":{}}}]})"));
  CHECK_FALSE(gemini().engine_chat_body(canonical(call, context("local"))).ok());
  json tools = kBody;
  tools["tools"] = J(R"([{"functionDeclarations":[{"name":"f"}]}])");
  CHECK_FALSE(gemini().engine_chat_body(canonical(tools, context("local"))).ok());
  json image = kBody;
  image["contents"][0]["parts"].push_back(J(R"({"inlineData":{"mimeType":"image/png","data":"AAAA"}})"));
  CHECK_FALSE(gemini().engine_chat_body(canonical(image, context("local"))).ok());

  cache::Sample engine;
  engine.choice = J(R"({"message":{"role":"assistant","content":"Hello","refusal":null},"logprobs":null,"finish_reason":"length"})");
  engine.finish_reason = "length";
  engine.completion_tokens = 1;
  engine.energy_j = 2.5;
  engine.backend = "engine";
  engine.model = "local";
  auto s = gemini().from_engine_sample(engine, canonical(kBody, context("local")));
  CHECK(s.choice == J(R"({"content":{"parts":[{"text":"Hello"}],"role":"model"},"finishReason":"MAX_TOKENS"})"));
  CHECK(s.finish_reason == "MAX_TOKENS");
  CHECK(s.energy_j == 2.5);
  CHECK(s.completion_tokens == 1);
  CHECK(s.backend == "engine");
  CHECK(s.response_extra["modelVersion"] == "local");
  CHECK(s.response_extra["responseId"].get<std::string>().size() == 24);
}
