// End to end through the real binary: a sample is the upstream's whole answer
// (DESIGN.md section 1). Every field the upstream sent comes back on a hit exactly as
// on the miss, in either form (JSON or stream) whichever form stored it; and only
// normal endings are stored. The fake's answer-shape knobs (tests/fakes/README.md)
// send what OpenAI and OpenRouter send; a seeded request lets the fake's own answer,
// asked for directly, be the reference.
#include <doctest/doctest.h>

#include <algorithm>

#include "../support/sdk_accumulate.hpp"
#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

namespace {

int calls(FakeUpstream& fake) { return fake.stats()["calls"].get<int>(); }

json seeded_body(const std::string& content, int n, bool stream) {
  json body = chat_body(content, n, stream);
  body["seed"] = 7;  // the fake's texts then depend on the body only
  if (stream) body["stream_options"] = {{"include_usage", true}};
  return body;
}

Response ask(uint16_t port, const json& body, const std::string& ns = "") {
  Headers headers;
  if (!ns.empty()) headers.emplace_back("X-Reprise-Namespace", ns);
  return post_json(port, "/v1/chat/completions", body, headers);
}

// A JSON answer less what differs per response.
json answer_of(const Response& r) {
  REQUIRE(r.status == 200);
  json body = r.json();
  body.erase("id");
  body.erase("created");
  return body;
}


// A streamed answer as a client rebuilds it: the chunks' own fields (the same in every
// chunk, less what differs per response or per event), per choice the message and
// the choice's other fields, and the usage; with the first delta of each choice.
json rebuild(const Response& r) {
  REQUIRE(r.status == 200);
  bool done = false;
  auto events = sse_events(r.body, &done);
  CHECK(done);
  json out = {{"head", nullptr}, {"choices", json::array()}, {"first_deltas", json::array()}, {"usage", nullptr}};
  for (json event : events) {
    if (event.contains("usage") && event["usage"].is_object()) out["usage"] = event["usage"];
    json choices = event["choices"];
    for (const char* key : {"id", "created", "choices", "usage", "obfuscation"}) event.erase(key);
    if (out["head"].is_null()) out["head"] = event;
    CHECK(event == out["head"]);  // service_tier and the like in every chunk
    for (auto& c : choices) {
      size_t i = c["index"].get<size_t>();
      while (out["choices"].size() <= i) {
        out["choices"].push_back({{"message", json::object()}});
        out["first_deltas"].push_back(c["delta"]);
      }
      json& slot = out["choices"][i];
      slot["message"] = sdk_accumulate(slot["message"], c["delta"]);
      for (auto& [key, value] : c.items())
        if (key != "delta" && key != "index" && (!value.is_null() || !slot.contains(key))) slot[key] = value;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("answers: every field of a rich answer comes back on a hit, in either form, whichever form stored it") {
  Stack s;
  s.fake.control({{"rich", true}});
  const uint16_t proxy = s.proxy.port(), fake = s.fake.port();

  // Stored from JSON: the miss and a JSON hit are the upstream's answer; a streamed hit
  // is the upstream's stream of it.
  const json made_json = seeded_body("Made as JSON", 2, false);
  const json upstream_json = answer_of(ask(fake, made_json));
  const json upstream_stream = rebuild(ask(fake, seeded_body("Made as JSON", 2, true)));
  REQUIRE(upstream_json["service_tier"] == "default");
  REQUIRE(upstream_json["usage"]["completion_tokens_details"]["reasoning_tokens"].get<int>() > 0);
  REQUIRE(upstream_json["choices"][0]["message"].contains("reasoning_content"));
  auto miss = ask(proxy, made_json, "A");
  CHECK(miss.header("X-Reprise-Cache") == "miss");
  CHECK(answer_of(miss) == upstream_json);
  auto hit = ask(proxy, made_json, "B");
  CHECK(hit.header("X-Reprise-Cache") == "hit");
  CHECK(answer_of(hit) == upstream_json);
  auto stream_hit = ask(proxy, seeded_body("Made as JSON", 2, true), "C");
  CHECK(stream_hit.header("X-Reprise-Cache") == "hit");
  CHECK(rebuild(stream_hit) == upstream_stream);

  // Stored from a stream: the same, the other way round.
  const json made_stream = seeded_body("Made as a stream", 2, true);
  const json upstream_live = rebuild(ask(fake, made_stream));
  const json upstream_answer = answer_of(ask(fake, seeded_body("Made as a stream", 2, false)));
  REQUIRE(upstream_live["head"]["service_tier"] == "default");
  auto live = ask(proxy, made_stream, "A");
  CHECK(live.header("X-Reprise-Cache") == "miss");
  CHECK(rebuild(live) == upstream_live);
  auto replay = ask(proxy, made_stream, "B");
  CHECK(replay.header("X-Reprise-Cache") == "hit");
  CHECK(rebuild(replay) == upstream_live);
  auto json_hit = ask(proxy, seeded_body("Made as a stream", 2, false), "C");
  CHECK(json_hit.header("X-Reprise-Cache") == "hit");
  CHECK(answer_of(json_hit) == upstream_answer);
  CHECK(calls(s.fake) == 2 + 2 + 2);  // the references, and one call per stored answer
}

TEST_CASE("answers: a tool-call-only answer replays with content null and its custom call whole") {
  Stack s;
  s.fake.control({{"tool_calls", "both"}});
  const uint16_t proxy = s.proxy.port(), fake = s.fake.port();

  const json made_stream = seeded_body("Call the tools", 1, true);
  const json upstream_live = rebuild(ask(fake, made_stream));
  const json upstream_answer = answer_of(ask(fake, seeded_body("Call the tools", 1, false)));
  REQUIRE(upstream_live["first_deltas"][0]["content"].is_null());
  REQUIRE(upstream_answer["choices"][0]["message"]["tool_calls"][1]["custom"]["input"].is_string());

  CHECK(rebuild(ask(proxy, made_stream, "A")) == upstream_live);
  // The agent's next turn sends the rebuilt message back: the replayed stream must
  // rebuild the very same message (content null, not ""), or that turn misses.
  const json replayed = rebuild(ask(proxy, made_stream, "B"));
  CHECK(replayed["first_deltas"][0]["content"].is_null());
  CHECK(replayed["choices"] == upstream_live["choices"]);
  CHECK(replayed == upstream_live);
  // The JSON form of the streamed sample: no stream-only "index" in its calls.
  CHECK(answer_of(ask(proxy, seeded_body("Call the tools", 1, false), "C")) == upstream_answer);

  // Stored from JSON, replayed as a stream.
  const json made_json = seeded_body("Call them as JSON", 1, false);
  const json json_answer = answer_of(ask(fake, made_json));
  const json json_live = rebuild(ask(fake, seeded_body("Call them as JSON", 1, true)));
  CHECK(answer_of(ask(proxy, made_json, "A")) == json_answer);
  CHECK(rebuild(ask(proxy, seeded_body("Call them as JSON", 1, true), "B")) == json_live);
}

TEST_CASE("answers: finish_reason error is never stored, in JSON, in a stream, or in one choice of n") {
  ProxyConfig config;
  config.upstream = "max_retries = 0\n";
  Stack s(config);
  const uint16_t proxy = s.proxy.port();

  // JSON: the client gets an error, and the next request asks the upstream again.
  s.fake.control({{"finish_reason", "error"}});
  auto failed = ask(proxy, chat_body("Fail midway"), "A");
  CHECK(failed.status == 502);
  CHECK(failed.json()["error"]["message"].get<std::string>().find("error") != std::string::npos);
  s.fake.control({{"finish_reason", nullptr}});
  int before = calls(s.fake);
  auto again = ask(proxy, chat_body("Fail midway"), "A");
  CHECK(again.status == 200);
  CHECK(again.header("X-Reprise-Cache") == "miss");
  CHECK(again.header("X-Reprise-Samples") == "0-0");
  CHECK(calls(s.fake) == before + 1);

  // A stream: the pieces went out live; the stream ends without [DONE], nothing stored.
  s.fake.control({{"finish_reason", "error"}});
  auto cut = ask(proxy, chat_body("Fail while streaming", 1, true), "A");
  bool done = true;
  sse_events(cut.body, &done);
  CHECK_FALSE(done);
  s.fake.control({{"finish_reason", nullptr}});
  before = calls(s.fake);
  auto streamed = ask(proxy, chat_body("Fail while streaming", 1, true), "A");
  CHECK(streamed.header("X-Reprise-Cache") == "miss");
  CHECK(streamed.header("X-Reprise-Samples") == "0-0");
  CHECK(calls(s.fake) == before + 1);

  // n = 2, one choice ends with "error": the whole call is no complete success.
  s.fake.control({{"finish_reason", "error"}, {"finish_reason_choice", 1}});
  CHECK(ask(proxy, chat_body("One bad choice", 2), "A").status == 502);
  s.fake.control({{"finish_reason", nullptr}});
  before = calls(s.fake);
  auto both = ask(proxy, chat_body("One bad choice", 2), "A");
  CHECK(both.header("X-Reprise-Cache") == "miss");
  CHECK(both.header("X-Reprise-Samples") == "0-1");
  CHECK(calls(s.fake) == before + 1);
}
