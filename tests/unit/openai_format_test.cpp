// The OpenAI wire format of cached samples (proxy/openai_format.hpp): accumulating
// streams, replaying choices, bodies and chunks, token splits, embeddings, SSE parsing.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxy/openai_format.hpp"
#include "../support/sdk_accumulate.hpp"

using namespace reprise;
using namespace reprise::format;
using nlohmann::json;
using reprise::test::sdk_accumulate;

namespace {

json J(const char* text) { return json::parse(text); }

json accumulate(Endpoint endpoint, const std::vector<json>& chunks) {
  ChoiceAccumulator acc(endpoint);
  for (const json& c : chunks) acc.add(c);
  return acc.choice();
}

std::string joined(const std::vector<std::string_view>& pieces) {
  std::string out;
  for (auto p : pieces) out += p;
  return out;
}

std::vector<std::string> as_strings(const std::vector<std::string_view>& pieces) {
  return {pieces.begin(), pieces.end()};
}

cache::Sample sample_of(json choice, uint32_t prompt, uint32_t completion, std::string model = "gpt-4o-mini",
                        std::string fingerprint = "fp_1") {
  cache::Sample s;
  s.choice = std::move(choice);
  s.prompt_tokens = prompt;
  s.completion_tokens = completion;
  s.model = std::move(model);
  s.system_fingerprint = std::move(fingerprint);
  if (s.choice.is_object() && s.choice.contains("finish_reason") && s.choice["finish_reason"].is_string())
    s.finish_reason = s.choice["finish_reason"];
  return s;
}

// Checks replay then accumulate gives the choice back.
void check_round_trip(Endpoint endpoint, const json& choice) {
  auto chunks = replay_choice(endpoint, choice);
  INFO("choice: " << choice.dump());
  CHECK(accumulate(endpoint, chunks) == choice);
}

std::vector<std::string> feed_all(SseParser& parser, std::string_view bytes) {
  std::vector<std::string> events;
  parser.feed(bytes, events);
  return events;
}

}  // namespace

// ---------------------------------------------------------------------------------
// ChoiceAccumulator

TEST_CASE("format: accumulate a chat stream into the non-streamed choice") {
  ChoiceAccumulator acc(Endpoint::chat_completions);
  acc.add(J(R"({"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null})"));
  acc.add(J(R"({"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null})"));
  acc.add(J(R"({"delta":{"content":" world"},"logprobs":null,"finish_reason":null})"));
  CHECK_FALSE(acc.finished());
  CHECK(acc.finish_reason().empty());
  acc.add(J(R"({"delta":{},"logprobs":null,"finish_reason":"stop"})"));
  CHECK(acc.finished());
  CHECK(acc.finish_reason() == "stop");
  CHECK(acc.pieces() == 2);  // the role chunk with "" carries no piece
  CHECK(acc.choice() == J(R"({"message":{"role":"assistant","content":"Hello world"},
                               "logprobs":null,"finish_reason":"stop"})"));
}

TEST_CASE("format: an empty chat stream gives empty content, not null") {
  json choice = accumulate(Endpoint::chat_completions,
                           {J(R"({"delta":{"role":"assistant","content":""}})"),
                            J(R"({"delta":{},"finish_reason":"length"})")});
  CHECK(choice == J(R"({"message":{"role":"assistant","content":""},
                        "logprobs":null,"finish_reason":"length"})"));
}

TEST_CASE("format: tool_calls are merged by index over several deltas, which the answer drops") {
  ChoiceAccumulator acc(Endpoint::chat_completions);
  acc.add(J(R"({"delta":{"role":"assistant","content":null,"tool_calls":[
               {"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}})"));
  acc.add(J(R"({"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]}})"));
  acc.add(J(R"({"delta":{"tool_calls":[
               {"index":1,"id":"call_2","type":"function","function":{"name":"get_","arguments":""}}]}})"));
  acc.add(J(R"({"delta":{"tool_calls":[{"index":1,"function":{"name":"time","arguments":"{}"}}]}})"));
  acc.add(J(R"({"delta":{"tool_calls":[{"index":0,"id":"ignored","function":{"arguments":":1}"}}]}})"));
  acc.add(J(R"({"delta":{},"logprobs":null,"finish_reason":"tool_calls"})"));
  CHECK(acc.pieces() == 5);
  CHECK(acc.choice() == J(R"({"message":{"role":"assistant","content":null,"tool_calls":[
        {"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},
        {"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},
        "logprobs":null,"finish_reason":"tool_calls"})"));
}

TEST_CASE("format: content and tool_calls in one stream keep both") {
  json choice = accumulate(Endpoint::chat_completions,
                           {J(R"({"delta":{"role":"assistant","content":"Let me check."}})"),
                            J(R"({"delta":{"tool_calls":[{"index":0,"id":"c","type":"function",
                                  "function":{"name":"f","arguments":"{}"}}]}})"),
                            J(R"({"delta":{},"finish_reason":"tool_calls"})")});
  CHECK(choice["message"]["content"] == "Let me check.");
  CHECK(choice["message"]["tool_calls"].size() == 1);
}

TEST_CASE("format: a streamed refusal has content null") {
  ChoiceAccumulator acc(Endpoint::chat_completions);
  acc.add(J(R"({"delta":{"role":"assistant","content":null,"refusal":""}})"));
  acc.add(J(R"({"delta":{"refusal":"I can't"}})"));
  acc.add(J(R"({"delta":{"refusal":" help."}})"));
  acc.add(J(R"({"delta":{},"finish_reason":"stop"})"));
  CHECK(acc.pieces() == 2);
  CHECK(acc.choice() == J(R"({"message":{"role":"assistant","content":null,"refusal":"I can't help."},
                               "logprobs":null,"finish_reason":"stop"})"));
}

TEST_CASE("format: the legacy function_call is concatenated") {
  json choice = accumulate(Endpoint::chat_completions,
                           {J(R"({"delta":{"role":"assistant","function_call":{"name":"f","arguments":""}}})"),
                            J(R"({"delta":{"function_call":{"arguments":"{\"x\":"}}})"),
                            J(R"({"delta":{"function_call":{"arguments":"2}"}}})"),
                            J(R"({"delta":{},"finish_reason":"function_call"})")});
  CHECK(choice == J(R"({"message":{"role":"assistant","content":null,
                        "function_call":{"name":"f","arguments":"{\"x\":2}"}},
                        "logprobs":null,"finish_reason":"function_call"})"));
}

TEST_CASE("format: chat logprobs arrays are concatenated") {
  json choice = accumulate(Endpoint::chat_completions, {
      J(R"({"delta":{"role":"assistant","content":""},"logprobs":null})"),
      J(R"({"delta":{"content":"Hi"},"logprobs":{"content":[
           {"token":"Hi","logprob":-0.5,"bytes":[72,105],"top_logprobs":[]}],"refusal":null}})"),
      J(R"({"delta":{"content":"!"},"logprobs":{"content":[
           {"token":"!","logprob":-1.25,"bytes":[33],"top_logprobs":[]}],"refusal":null}})"),
      J(R"({"delta":{},"logprobs":null,"finish_reason":"stop"})")});
  CHECK(choice["logprobs"] == J(R"({"content":[
      {"token":"Hi","logprob":-0.5,"bytes":[72,105],"top_logprobs":[]},
      {"token":"!","logprob":-1.25,"bytes":[33],"top_logprobs":[]}],"refusal":null})"));
  CHECK(choice["message"]["content"] == "Hi!");
}

TEST_CASE("format: accumulate a completions stream, logprobs included") {
  ChoiceAccumulator acc(Endpoint::completions);
  acc.add(J(R"({"text":"Hello","index":0,"logprobs":{"tokens":["Hello"],"token_logprobs":[-0.1],
               "top_logprobs":[{"Hello":-0.1}],"text_offset":[5]},"finish_reason":null})"));
  acc.add(J(R"({"text":" world","index":0,"logprobs":{"tokens":[" world"],"token_logprobs":[-0.2],
               "top_logprobs":[{" world":-0.2}],"text_offset":[10]},"finish_reason":null})"));
  acc.add(J(R"({"text":"","index":0,"logprobs":null,"finish_reason":"length"})"));
  CHECK(acc.pieces() == 2);
  CHECK(acc.finish_reason() == "length");
  CHECK(acc.choice() == J(R"({"text":"Hello world","finish_reason":"length","logprobs":{
      "tokens":["Hello"," world"],"token_logprobs":[-0.1,-0.2],
      "top_logprobs":[{"Hello":-0.1},{" world":-0.2}],"text_offset":[5,10]}})"));

  json plain = accumulate(Endpoint::completions,
                          {J(R"({"text":" world","index":0,"logprobs":null,"finish_reason":null})"),
                           J(R"({"text":"","index":0,"logprobs":null,"finish_reason":"stop"})")});
  CHECK(plain == J(R"({"text":" world","logprobs":null,"finish_reason":"stop"})"));
}

TEST_CASE("format: malformed chunk choices are ignored, never thrown on") {
  ChoiceAccumulator chat(Endpoint::chat_completions);
  for (const char* bad : {R"(42)", R"(null)", R"("x")", R"([1,2])", R"({"delta":"x"})",
                          R"({"delta":{"content":5,"role":7,"refusal":[],"tool_calls":"x"}})",
                          R"({"delta":{"tool_calls":[5,null,{"index":"a","function":7}]}})",
                          R"({"delta":{"function_call":{"name":3}}, "logprobs":"bad"})",
                          R"({"delta":{}, "logprobs":{"content":"x"}, "finish_reason":3})"}) {
    INFO(std::string(bad));
    CHECK_NOTHROW(chat.add(J(bad)));
  }
  CHECK_NOTHROW((void)chat.choice());
  CHECK_FALSE(chat.finished());
  CHECK(chat.choice()["message"]["role"] == "assistant");

  ChoiceAccumulator text(Endpoint::completions);
  CHECK_NOTHROW(text.add(J(R"({"text":[1],"logprobs":{"tokens":"x"}})")));
  CHECK_NOTHROW(text.add(J("17")));
  CHECK(text.choice()["text"] == "");
  CHECK(text.pieces() == 0);
}

// ---------------------------------------------------------------------------------
// replay_choice

TEST_CASE("format: replay a chat choice as one chunk per token piece") {
  json choice = J(R"({"message":{"role":"assistant","content":"Hello world!","refusal":null},
                      "logprobs":null,"finish_reason":"stop"})");
  auto chunks = replay_choice(Endpoint::chat_completions, choice);
  REQUIRE(chunks.size() == 4);
  CHECK(chunks[0] == J(R"({"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null})"));
  CHECK(chunks[1] == J(R"({"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null})"));
  CHECK(chunks[2] == J(R"({"delta":{"content":" world!"},"logprobs":null,"finish_reason":null})"));
  CHECK(chunks[3] == J(R"({"delta":{},"logprobs":null,"finish_reason":"stop"})"));
  check_round_trip(Endpoint::chat_completions, choice);

  ChoiceAccumulator acc(Endpoint::chat_completions);
  for (const json& c : chunks) acc.add(c);
  CHECK(acc.pieces() == 2);
}

TEST_CASE("format: replay a chat choice with logprobs, one chunk per logprobs entry") {
  json choice = J(R"({"message":{"role":"assistant","content":"Hi there","refusal":null},
      "logprobs":{"content":[
        {"token":"Hi","logprob":-0.5,"bytes":[72,105],"top_logprobs":[{"token":"Hi","logprob":-0.5,"bytes":[72,105]}]},
        {"token":" the","logprob":-0.25,"bytes":[32,116,104,101],"top_logprobs":[]},
        {"token":"re","logprob":-0.125,"bytes":[114,101],"top_logprobs":[]}],
      "refusal":null},
      "finish_reason":"stop"})");
  auto chunks = replay_choice(Endpoint::chat_completions, choice);
  REQUIRE(chunks.size() == 5);
  CHECK(chunks[1]["delta"] == J(R"({"content":"Hi"})"));
  CHECK(chunks[2]["delta"] == J(R"({"content":" the"})"));
  CHECK(chunks[3]["delta"] == J(R"({"content":"re"})"));
  CHECK(chunks[2]["logprobs"] ==
        J(R"({"content":[{"token":" the","logprob":-0.25,"bytes":[32,116,104,101],"top_logprobs":[]}],
              "refusal":null})"));
  CHECK(chunks[4] == J(R"({"delta":{},"logprobs":null,"finish_reason":"stop"})"));
  check_round_trip(Endpoint::chat_completions, choice);
}

TEST_CASE("format: replay round-trips logprobs that do not line up with the content") {
  // Tokens that do not concatenate to the content (a stored choice edited or a byte
  // token rendered differently): pieces by words, every entry carried once.
  json choice = J(R"({"message":{"role":"assistant","content":"Hello world","refusal":null},
      "logprobs":{"content":[{"token":"Hel","logprob":-1,"bytes":[],"top_logprobs":[]},
                             {"token":"XX","logprob":-2,"bytes":[],"top_logprobs":[]}],"refusal":null},
      "finish_reason":"stop"})");
  check_round_trip(Endpoint::chat_completions, choice);
  // logprobs present but content empty: still carried, on the final chunk.
  json empty = J(R"({"message":{"role":"assistant","content":"","refusal":null},
      "logprobs":{"content":[{"token":"x","logprob":-1,"bytes":[],"top_logprobs":[]}],"refusal":null},
      "finish_reason":"length"})");
  check_round_trip(Endpoint::chat_completions, empty);
  json no_entries = J(R"({"message":{"role":"assistant","content":"ok","refusal":null},
      "logprobs":{"content":[],"refusal":null},"finish_reason":"stop"})");
  check_round_trip(Endpoint::chat_completions, no_entries);
}

TEST_CASE("format: replay a chat choice with tool_calls") {
  json choice = J(R"({"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[
      {"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\": 1}"}},
      {"id":"call_2","type":"function","function":{"name":"g","arguments":"{}"}}]},
      "logprobs":null,"finish_reason":"tool_calls"})");
  auto chunks = replay_choice(Endpoint::chat_completions, choice);
  REQUIRE(chunks.size() == 4);
  CHECK(chunks[1] == J(R"({"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function",
        "function":{"name":"f","arguments":"{\"a\": 1}"}}]},"logprobs":null,"finish_reason":null})"));
  CHECK(chunks[3]["finish_reason"] == "tool_calls");
  check_round_trip(Endpoint::chat_completions, choice);

  // A non-streamed answer's calls have no "index": the replay numbers them.
  json unindexed = J(R"({"message":{"role":"assistant","content":null,"tool_calls":[
      {"id":"a","type":"function","function":{"name":"f","arguments":"1"}},
      {"id":"b","type":"function","function":{"name":"g","arguments":"2"}}]},"finish_reason":"tool_calls"})");
  auto replayed = replay_choice(Endpoint::chat_completions, unindexed);
  REQUIRE(replayed.size() == 4);
  CHECK(replayed[1]["delta"]["tool_calls"][0]["index"] == 0);
  CHECK(replayed[2]["delta"]["tool_calls"][0]["index"] == 1);
  CHECK(accumulate(Endpoint::chat_completions, replayed)["message"]["tool_calls"][1] ==
        J(R"({"id":"b","type":"function","function":{"name":"g","arguments":"2"}})"));
}

TEST_CASE("format: replay round-trips refusals, function_call and other roles") {
  check_round_trip(Endpoint::chat_completions,
                   J(R"({"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},
                         "logprobs":null,"finish_reason":"stop"})"));
  check_round_trip(Endpoint::chat_completions,
                   J(R"({"message":{"role":"assistant","content":null,"refusal":null,
                         "function_call":{"name":"f","arguments":"{}"}},"logprobs":null,"finish_reason":"function_call"})"));
  check_round_trip(Endpoint::chat_completions,
                   J(R"({"message":{"role":"assistant","content":"  multi\nline\n\n text ","refusal":null},
                         "logprobs":null,"finish_reason":"length"})"));
}

TEST_CASE("format: replay a completions choice") {
  json choice = J(R"({"text":"Hello world","logprobs":null,"finish_reason":"length"})");
  auto chunks = replay_choice(Endpoint::completions, choice);
  REQUIRE(chunks.size() == 3);
  CHECK(chunks[0] == J(R"({"text":"Hello","logprobs":null,"finish_reason":null})"));
  CHECK(chunks[1] == J(R"({"text":" world","logprobs":null,"finish_reason":null})"));
  CHECK(chunks[2] == J(R"({"text":"","logprobs":null,"finish_reason":"length"})"));
  check_round_trip(Endpoint::completions, choice);
  check_round_trip(Endpoint::completions, J(R"({"text":"","logprobs":null,"finish_reason":"stop"})"));

  json with_logprobs = J(R"({"text":"Hi there","finish_reason":"stop","logprobs":{
      "tokens":["Hi"," there"],"token_logprobs":[-0.5,-0.25],
      "top_logprobs":[{"Hi":-0.5},{" there":-0.25}],"text_offset":[0,2]}})");
  auto lp_chunks = replay_choice(Endpoint::completions, with_logprobs);
  REQUIRE(lp_chunks.size() == 3);
  CHECK(lp_chunks[1] == J(R"({"text":" there","finish_reason":null,"logprobs":{"tokens":[" there"],
        "token_logprobs":[-0.25],"top_logprobs":[{" there":-0.25}],"text_offset":[2]}})"));
  check_round_trip(Endpoint::completions, with_logprobs);

  // The first token's top_logprobs is null in the legacy API; misaligned arrays fall
  // back to word pieces.
  check_round_trip(Endpoint::completions, J(R"({"text":"a b","finish_reason":"stop","logprobs":{
      "tokens":["a"," b"],"token_logprobs":[null,-1],"top_logprobs":null,"text_offset":[0,1]}})"));
  check_round_trip(Endpoint::completions, J(R"({"text":"a b c","finish_reason":"stop","logprobs":{
      "tokens":["a"," b"],"token_logprobs":[-1],"top_logprobs":null,"text_offset":[0,1]}})"));
}

TEST_CASE("format: replay of malformed stored choices does not throw") {
  for (const char* bad : {R"(null)", R"(5)", R"({})", R"({"message":7})",
                          R"({"message":{"content":["x"],"tool_calls":{"a":1}},"logprobs":[1]})",
                          R"({"message":{"tool_calls":[1,{"function":"x"}]},"logprobs":{"content":[1,2]}})"}) {
    INFO(std::string(bad));
    std::vector<json> chunks;
    CHECK_NOTHROW(chunks = replay_choice(Endpoint::chat_completions, J(bad)));
    REQUIRE(chunks.size() >= 2);
    CHECK(chunks.front()["delta"]["role"] == "assistant");
    CHECK(chunks.back()["delta"] == json::object());
    CHECK_NOTHROW((void)replay_choice(Endpoint::completions, J(bad)));
  }
}

// ---------------------------------------------------------------------------------
// Pieces, weights, splits, usage

TEST_CASE("format: token_pieces splits before whitespace and concatenates back") {
  CHECK(as_strings(token_pieces("Hello world!")) == std::vector<std::string>{"Hello", " world!"});
  CHECK(as_strings(token_pieces(" a b")) == std::vector<std::string>{" a", " b"});
  CHECK(as_strings(token_pieces("a  b\n\nc ")) == std::vector<std::string>{"a", "  b", "\n\nc", " "});
  CHECK(as_strings(token_pieces("   ")) == std::vector<std::string>{"   "});
  CHECK(as_strings(token_pieces("word")) == std::vector<std::string>{"word"});
  CHECK(as_strings(token_pieces("caf\xc3\xa9 \xe2\x82\xac")) ==
        std::vector<std::string>{"caf\xc3\xa9", " \xe2\x82\xac"});
  CHECK(token_pieces("").empty());

  std::mt19937_64 rng(7);
  const std::string alphabet = "ab \n\t\r.";
  for (int round = 0; round < 200; ++round) {
    std::string text;
    for (size_t i = 0, n = rng() % 20; i < n; ++i) text += alphabet[rng() % alphabet.size()];
    auto pieces = token_pieces(text);
    CHECK(joined(pieces) == text);
    for (auto p : pieces) CHECK_FALSE(p.empty());
  }
}

TEST_CASE("format: choice_weight counts pieces of text, refusal and tool arguments") {
  CHECK(choice_weight(Endpoint::chat_completions,
                      J(R"({"message":{"content":"one two three","refusal":null}})")) == 3);
  CHECK(choice_weight(Endpoint::chat_completions,
                      J(R"({"message":{"content":null,"refusal":"no way","tool_calls":[
                            {"function":{"name":"f","arguments":"{\"a\": 1, \"b\": 2}"}}]}})")) == 2 + 4);
  CHECK(choice_weight(Endpoint::chat_completions, J(R"({"message":{"content":""}})")) == 1);
  CHECK(choice_weight(Endpoint::chat_completions, J("null")) == 1);
  CHECK(choice_weight(Endpoint::completions, J(R"({"text":" a b c d"})")) == 4);
  CHECK(choice_weight(Endpoint::completions, J(R"({"text":7})")) == 1);
}

TEST_CASE("format: split_proportionally sums exactly") {
  using V = std::vector<uint32_t>;
  CHECK(split_proportionally(10, {1, 1, 1}) == V{4, 3, 3});
  CHECK(split_proportionally(5, {1, 3}) == V{1, 4});
  CHECK(split_proportionally(100, {1, 1, 2}) == V{25, 25, 50});
  CHECK(split_proportionally(10, {0, 0}) == V{5, 5});   // zero counts as one
  CHECK(split_proportionally(4, {0, 3}) == V{1, 3});
  CHECK(split_proportionally(1, {2, 2}) == V{1, 0});    // ties to the lower index
  CHECK(split_proportionally(2, {1, 1, 1}) == V{1, 1, 0});
  CHECK(split_proportionally(7, {1, 2, 1, 2}) == V{1, 3, 1, 2});  // remainders 1,2,1,2 of 6: the 2nd wins the tie
  CHECK(split_proportionally(0, {3, 5}) == V{0, 0});
  CHECK(split_proportionally(0, {0}) == V{0});
  CHECK(split_proportionally(9, {}).empty());
  CHECK(split_proportionally(9, {5}) == V{9});

  const uint64_t big = std::numeric_limits<uint64_t>::max();
  auto huge = split_proportionally(1'000'000'000, {big, big, 1});
  CHECK(std::accumulate(huge.begin(), huge.end(), uint64_t{0}) == 1'000'000'000);
  CHECK(huge[0] == 500'000'000);

  std::mt19937_64 rng(11);
  for (int round = 0; round < 300; ++round) {
    std::vector<uint64_t> weights(1 + rng() % 8);
    for (auto& w : weights) w = rng() % 50;
    uint64_t total = rng() % 5000;
    auto shares = split_proportionally(total, weights);
    REQUIRE(shares.size() == weights.size());
    CHECK(std::accumulate(shares.begin(), shares.end(), uint64_t{0}) == total);
  }
}

TEST_CASE("format: usage_of counts the prompt once") {
  auto a = sample_of(json::object(), 12, 5);
  auto b = sample_of(json::object(), 12, 7);
  auto c = sample_of(json::object(), 11, 1);
  CHECK(usage_of(Endpoint::chat_completions, {&a, &b, &c}) ==
        J(R"({"prompt_tokens":12,"completion_tokens":13,"total_tokens":25})"));
  CHECK(usage_of(Endpoint::completions, {&a}) ==
        J(R"({"prompt_tokens":12,"completion_tokens":5,"total_tokens":17})"));
  CHECK(usage_of(Endpoint::chat_completions, {}) ==
        J(R"({"prompt_tokens":0,"completion_tokens":0,"total_tokens":0})"));
  CHECK(usage_of(Endpoint::embeddings, {&a, &b}) == J(R"({"prompt_tokens":12,"total_tokens":12})"));
}

// ---------------------------------------------------------------------------------
// Bodies and chunks

TEST_CASE("format: new_response_id has the prefix and 24 random alphanumerics") {
  std::string chat = new_response_id(Endpoint::chat_completions);
  std::string text = new_response_id(Endpoint::completions);
  REQUIRE(chat.rfind("chatcmpl-", 0) == 0);
  REQUIRE(text.rfind("cmpl-", 0) == 0);
  CHECK(chat.size() == 9 + 24);
  CHECK(text.size() == 5 + 24);
  for (char ch : chat.substr(9)) CHECK(std::isalnum(static_cast<unsigned char>(ch)));
  CHECK(new_response_id(Endpoint::chat_completions) != chat);
}

TEST_CASE("format: completion_body re-indexes choices from 0 and sums usage") {
  auto a = sample_of(J(R"({"message":{"role":"assistant","content":"A","refusal":null},
                          "logprobs":null,"finish_reason":"stop"})"), 9, 1, "gpt-4o-mini-2024-07-18", "fp_a");
  auto b = sample_of(J(R"({"index":5,"message":{"role":"assistant","content":"B b","refusal":null},
                          "logprobs":null,"finish_reason":"length"})"), 9, 2, "other", "fp_b");
  json body = completion_body(Endpoint::chat_completions, "chatcmpl-x", 1700000000, {&a, &b}, "fallback");
  CHECK(body == J(R"({"id":"chatcmpl-x","object":"chat.completion","created":1700000000,
      "model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_a",
      "choices":[
        {"index":0,"message":{"role":"assistant","content":"A","refusal":null},"logprobs":null,"finish_reason":"stop"},
        {"index":1,"message":{"role":"assistant","content":"B b","refusal":null},"logprobs":null,"finish_reason":"length"}],
      "usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}})"));

  auto t = sample_of(J(R"({"text":" hi","logprobs":null})"), 4, 1, "", "");
  t.finish_reason = "stop";  // kept beside the choice: filled in when the choice lost it
  json text = completion_body(Endpoint::completions, "cmpl-y", 5, {&t}, "gpt-3.5-turbo-instruct");
  CHECK(text == J(R"({"id":"cmpl-y","object":"text_completion","created":5,"model":"gpt-3.5-turbo-instruct",
      "system_fingerprint":null,"choices":[{"index":0,"text":" hi","logprobs":null,"finish_reason":"stop"}],
      "usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5}})"));

  json none = completion_body(Endpoint::chat_completions, "id", 1, {}, "m");
  CHECK(none["choices"] == json::array());
  CHECK(none["model"] == "m");
  CHECK(none["system_fingerprint"].is_null());
}

TEST_CASE("format: chunk and usage_chunk shapes") {
  ChunkHead head{Endpoint::chat_completions, "chatcmpl-1", 1700000001, "gpt-4o-mini", "fp_9", false, nullptr};
  json choice = J(R"({"delta":{"content":" world"},"logprobs":null,"finish_reason":null})");
  CHECK(chunk(head, 2, choice) == J(R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000001,
      "model":"gpt-4o-mini","system_fingerprint":"fp_9",
      "choices":[{"index":2,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}]})"));

  head.include_usage = true;
  head.system_fingerprint.clear();
  json with_usage = chunk(head, 0, choice);
  REQUIRE(with_usage.contains("usage"));
  CHECK(with_usage["usage"].is_null());
  CHECK(with_usage["system_fingerprint"].is_null());
  CHECK(with_usage["choices"][0]["index"] == 0);

  json usage = J(R"({"prompt_tokens":3,"completion_tokens":4,"total_tokens":7})");
  CHECK(usage_chunk(head, usage) == J(R"({"id":"chatcmpl-1","object":"chat.completion.chunk",
      "created":1700000001,"model":"gpt-4o-mini","system_fingerprint":null,"choices":[],
      "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}})"));

  ChunkHead text_head{Endpoint::completions, "cmpl-1", 1, "m", "", false, nullptr};
  json text_chunk = chunk(text_head, 1, J(R"({"text":"x","index":9,"logprobs":null,"finish_reason":null})"));
  CHECK(text_chunk == J(R"({"id":"cmpl-1","object":"text_completion","created":1,"model":"m",
      "system_fingerprint":null,"choices":[{"index":1,"text":"x","logprobs":null,"finish_reason":null}]})"));
}

TEST_CASE("format: sse_event frames compact JSON") {
  CHECK(sse_event(J(R"({"a": [1, 2], "b": "x"})")) == "data: {\"a\":[1,2],\"b\":\"x\"}\n\n");
  CHECK(kSseDone == "data: [DONE]\n\n");
  // Invalid UTF-8 in a stored string is replaced, not thrown on.
  json bad = {{"text", std::string("a\xff" "b")}};
  std::string event;
  CHECK_NOTHROW(event = sse_event(bad));
  CHECK(event == "data: {\"text\":\"a\xef\xbf\xbd" "b\"}\n\n");
}

// ---------------------------------------------------------------------------------
// Embeddings

TEST_CASE("format: embeddings_body as floats and as base64") {
  cache::Sample s = sample_of(J(R"({"embeddings":[[1.0,-2.5],[0.1,0.0,3.0]]})"), 6, 0, "text-embedding-3-small");
  CHECK(embeddings_body(s, "float", "x") == J(R"({"object":"list","model":"text-embedding-3-small",
      "data":[{"object":"embedding","index":0,"embedding":[1.0,-2.5]},
              {"object":"embedding","index":1,"embedding":[0.1,0.0,3.0]}],
      "usage":{"prompt_tokens":6,"total_tokens":6}})"));
  CHECK(embeddings_body(s, "", "x")["data"][1]["embedding"] == J("[0.1,0.0,3.0]"));

  json b64 = embeddings_body(s, "base64", "x");
  REQUIRE(b64["data"].size() == 2);
  CHECK(b64["data"][0]["embedding"] == "AACAPwAAIMA=");  // 1.0f = 00 00 80 3f, -2.5f = 00 00 20 c0
  auto back = base64_to_floats(b64["data"][1]["embedding"].get<std::string>());
  REQUIRE(back.has_value());
  // float32 rounding: 0.1 comes back as the nearest float.
  CHECK(*back == json::array({static_cast<double>(0.1f), 0.0, 3.0}));
  CHECK((*back)[0].get<double>() != 0.1);

  s.model.clear();
  s.choice = J(R"({"embedding":[0.5]})");  // a single list, read as one input
  json single = embeddings_body(s, "float", "fallback-model");
  CHECK(single["model"] == "fallback-model");
  CHECK(single["data"] == J(R"([{"object":"embedding","index":0,"embedding":[0.5]}])"));
  s.choice = J("7");
  CHECK(embeddings_body(s, "base64", "m")["data"] == json::array());
}

TEST_CASE("format: floats_to_base64 and base64_to_floats") {
  CHECK(floats_to_base64(J("[1.0]")) == "AACAPw==");
  CHECK(floats_to_base64(J("[]")) == "");
  CHECK(floats_to_base64(J("\"x\"")) == "");
  CHECK(base64_to_floats("AACAPw==") == std::optional<json>(J("[1.0]")));
  CHECK(base64_to_floats("") == std::optional<json>(json::array()));
  CHECK(base64_to_floats("AAAAAA==") == std::optional<json>(J("[0.0]")));  // four zero bytes

  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> dist(-10.0f, 10.0f);
  for (size_t n = 0; n < 12; ++n) {
    json floats = json::array();
    for (size_t i = 0; i < n; ++i) floats.push_back(static_cast<double>(dist(rng)));
    auto back = base64_to_floats(floats_to_base64(floats));
    REQUIRE(back.has_value());
    CHECK(*back == floats);
  }

  for (const char* bad : {"AAC", "AACAPw=", "AACA", "AAAAAAA=", "AACA Pw==", "AA==AAAA", "@@@@AAAA",
                          "AACAPw=A", "AACAP===", "AACAPx==", "\n"}) {
    INFO(std::string(bad));
    CHECK_FALSE(base64_to_floats(bad).has_value());
  }
}

// ---------------------------------------------------------------------------------
// SseParser

TEST_CASE("sse: SseParser at every byte boundary") {
  const std::string stream =
      "data: {\"a\":1}\n\n"
      ": keep-alive comment\n\n"
      "event: message\r\nid: 7\r\ndata: first\r\ndata:second\r\n\r\n"
      "data: cr only\rretry: 10\r\r"
      "data\n\n"
      "data: [DONE]\n\n"
      "data: unfinished";
  const std::vector<std::string> expected = {"{\"a\":1}", "first\nsecond", "cr only", "", "[DONE]"};

  for (size_t split = 0; split <= stream.size(); ++split) {
    SseParser parser;
    std::vector<std::string> events;
    parser.feed(std::string_view(stream).substr(0, split), events);
    parser.feed(std::string_view(stream).substr(split), events);
    INFO("split at " << split);
    CHECK(events == expected);
    CHECK(parser.buffered() == std::string("data: unfinished").size());
  }

  SseParser bytewise;
  std::vector<std::string> events;
  for (char c : stream) bytewise.feed(std::string_view(&c, 1), events);
  CHECK(events == expected);
}

TEST_CASE("sse: SseParser line rules") {
  SseParser parser;
  // A \r\n split between two feeds is one line end, not a line end and a blank line.
  CHECK(feed_all(parser, "data: x\r").empty());
  CHECK(feed_all(parser, "\ndata: y\r\n").empty());
  CHECK(feed_all(parser, "\r\n") == std::vector<std::string>{"x\ny"});

  // Only one leading space is stripped; values keep their other spaces and colons.
  CHECK(feed_all(parser, "data:  two: spaces \n\n") == std::vector<std::string>{" two: spaces "});
  // Comments and unknown fields alone dispatch nothing.
  CHECK(feed_all(parser, ":comment\nevent: ping\nid: 3\n\n").empty());
  // An event without its blank line is not emitted, and stays buffered.
  CHECK(feed_all(parser, "data: partial\n").empty());
  CHECK(parser.buffered() == std::string("partial").size());
  CHECK(feed_all(parser, "\n") == std::vector<std::string>{"partial"});
  CHECK(parser.buffered() == 0);
  // "datax:" is not "data".
  CHECK(feed_all(parser, "datax: no\n\n").empty());
  // Two events in one feed.
  CHECK(feed_all(parser, "data: 1\n\ndata: 2\n\n") == std::vector<std::string>{"1", "2"});
}

TEST_CASE("format: ChunkEncoder writes what sse_event(chunk(...)) writes") {
  using namespace reprise;
  format::ChunkHead head;
  head.id = "chatcmpl-x";
  head.created = 42;
  head.model = "m\"choices\":0";  // a model name that looks like the placeholder
  head.system_fingerprint = "fp";
  for (bool usage : {false, true}) {
    head.include_usage = usage;
    format::ChunkEncoder encoder;
    for (const nlohmann::json& piece : {nlohmann::json{{"delta", {{"content", " hi"}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}},
                                        nlohmann::json::object(),
                                        nlohmann::json{{"text", "x"}, {"index", 9}}}) {
      std::string encoded;
      encoder.append(encoded, head, 3, piece);
      std::string expected = format::sse_event(format::chunk(head, 3, piece));
      REQUIRE(encoded.starts_with("data: "));
      REQUIRE(encoded.ends_with("\n\n"));
      CHECK(nlohmann::json::parse(encoded.substr(6)) == nlohmann::json::parse(expected.substr(6)));
    }
    head.model = "other";  // a changed head rebuilds the prefix
    std::string encoded;
    encoder.append(encoded, head, 0, nlohmann::json::object());
    CHECK(nlohmann::json::parse(encoded.substr(6))["model"] == "other");
    head.model = "m";
  }
}

TEST_CASE("format: completion_text and rendered pieces equal completion_body and replay_choice") {
  using namespace reprise;
  cache::Sample a, b;
  a.choice = {{"message", {{"role", "assistant"}, {"content", "Hello \"world\" \u00e9"}, {"refusal", nullptr}}},
              {"logprobs", nullptr}, {"finish_reason", "stop"}};
  a.finish_reason = "stop";
  a.prompt_tokens = 7;
  a.completion_tokens = 3;
  a.model = "gpt-x";
  a.system_fingerprint = "fp_1";
  b = a;
  b.choice = {{"message", {{"role", "assistant"}, {"content", "Other"}}}};  // no finish_reason in the choice
  b.finish_reason = "length";
  b.completion_tokens = 1;
  std::vector<const cache::Sample*> samples{&a, &b, &a};
  for (auto endpoint : {cache::Endpoint::chat_completions}) {
    auto text = format::completion_text(endpoint, "chatcmpl-1", 5, samples, "fallback");
    CHECK(nlohmann::json::parse(text) == format::completion_body(endpoint, "chatcmpl-1", 5, samples, "fallback"));
    const auto& r = format::rendered(endpoint, a);
    auto pieces = format::replay_choice(endpoint, a.choice);
    REQUIRE(r.pieces.size() == pieces.size());
    for (size_t i = 0; i < pieces.size(); ++i) CHECK(nlohmann::json::parse(r.pieces[i]) == pieces[i]);
    CHECK(&format::rendered(endpoint, a) == &r);  // made once, then reused
    cache::Sample copy = a;                        // a copy does not share the rendering
    CHECK(copy.rendered.load() == nullptr);
  }
  cache::Sample empty;
  auto none = format::completion_text(cache::Endpoint::completions, "cmpl-1", 5, {}, "m");
  CHECK(nlohmann::json::parse(none) == format::completion_body(cache::Endpoint::completions, "cmpl-1", 5, {}, "m"));
}

TEST_CASE("format: append_json_string escapes like nlohmann") {
  for (std::string text : {std::string("plain"), std::string("q\"b\\n\nr\rt\t"), std::string("\x01\x1f\b\f ok"),
                           std::string("caf\xc3\xa9"), std::string()}) {
    std::string out;
    reprise::format::append_json_string(out, text);
    CHECK(out == nlohmann::json(text).dump());
    CHECK(nlohmann::json::parse(out) == text);
  }
}

// ---------------------------------------------------------------------------------
// A sample is the upstream's whole answer (issue 16, item 5)

namespace {


// The message the SDK rebuilds from a choice's chunk choices.
json sdk_message(const std::vector<json>& chunk_choices) {
  json message = json::object();
  for (const json& c : chunk_choices) message = sdk_accumulate(message, c.value("delta", json::object()));
  return message;
}

// A tool-call-only answer with a function and a custom call, as OpenAI streams it.
std::vector<json> live_tool_call_stream() {
  return {J(R"({"delta":{"role":"assistant","content":null,"refusal":null,"tool_calls":[
               {"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":""}}]},
             "logprobs":null,"finish_reason":null})"),
          J(R"({"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\": "}}]},"logprobs":null,"finish_reason":null})"),
          J(R"({"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"rain\"}"}}]},"logprobs":null,"finish_reason":null})"),
          J(R"({"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"custom","custom":{"name":"run_code","input":""}}]},
             "logprobs":null,"finish_reason":null})"),
          J(R"({"delta":{"tool_calls":[{"index":1,"custom":{"input":"print("}}]},"logprobs":null,"finish_reason":null})"),
          J(R"x({"delta":{"tool_calls":[{"index":1,"custom":{"input":"1)"}}]},"logprobs":null,"finish_reason":null})x"),
          J(R"({"delta":{},"logprobs":null,"finish_reason":"tool_calls"})")};
}

// The same answer as OpenAI's JSON gives it.
json json_tool_call_choice() {
  return J(R"x({"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[
      {"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"q\": \"rain\"}"}},
      {"id":"call_2","type":"custom","custom":{"name":"run_code","input":"print(1)"}}]},
      "logprobs":null,"finish_reason":"tool_calls"})x");
}

// A reasoning model's answer with the fields OpenAI and OpenRouter add, streamed.
std::vector<json> live_rich_stream() {
  return {J(R"({"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null,
             "native_finish_reason":null})"),
          J(R"({"delta":{"reasoning_content":"Think"},"logprobs":null,"finish_reason":null,"native_finish_reason":null})"),
          J(R"({"delta":{"reasoning_content":" twice."},"logprobs":null,"finish_reason":null,"native_finish_reason":null})"),
          J(R"({"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null,"native_finish_reason":null})"),
          J(R"({"delta":{"content":" world"},"logprobs":null,"finish_reason":null,"native_finish_reason":null})"),
          J(R"({"delta":{"annotations":[{"type":"url_citation","url_citation":{"url":"https://a.example","title":"A",
             "start_index":0,"end_index":5}}]},"logprobs":null,"finish_reason":null,"native_finish_reason":null})"),
          J(R"({"delta":{"audio":{"id":"audio_1","transcript":"Hello"}},"logprobs":null,"finish_reason":null})"),
          J(R"({"delta":{"audio":{"transcript":" world","data":"AAAA"}},"logprobs":null,"finish_reason":null})"),
          J(R"({"delta":{"audio":{"data":"BBBB","expires_at":1700003600}},"logprobs":null,"finish_reason":null})"),
          J(R"({"delta":{},"logprobs":null,"finish_reason":"stop","native_finish_reason":"end_turn"})")};
}

json json_rich_choice() {
  return J(R"({"message":{"role":"assistant","content":"Hello world","refusal":null,
      "reasoning_content":"Think twice.",
      "annotations":[{"type":"url_citation","url_citation":{"url":"https://a.example","title":"A","start_index":0,"end_index":5}}],
      "audio":{"id":"audio_1","transcript":"Hello world","data":"AAAABBBB","expires_at":1700003600}},
      "logprobs":null,"finish_reason":"stop","native_finish_reason":"end_turn"})");
}

}  // namespace

TEST_CASE("format: a streamed answer is stored as the JSON answer, every field kept") {
  CHECK(accumulate(Endpoint::chat_completions, live_rich_stream()) == json_rich_choice());
  // Custom tool calls keep custom.input; no call gets a made-up function; the
  // stream-only "index" is not part of a non-streamed answer's calls.
  CHECK(accumulate(Endpoint::chat_completions, live_tool_call_stream()) == json_tool_call_choice());
  // Completions: a choice's other fields (vLLM's stop_reason, say) too.
  CHECK(accumulate(Endpoint::completions,
                   {J(R"({"text":"a","logprobs":null,"finish_reason":null,"stop_reason":null})"),
                    J(R"({"text":" b","logprobs":null,"finish_reason":"stop","stop_reason":42})")}) ==
        J(R"({"text":"a b","logprobs":null,"finish_reason":"stop","stop_reason":42})"));
}

TEST_CASE("format: a stored answer replays as a stream that rebuilds it, as the SDK rebuilds it") {
  for (const json& choice : {json_rich_choice(), json_tool_call_choice()}) {
    INFO(choice.dump());
    check_round_trip(Endpoint::chat_completions, choice);
    CHECK(sdk_message(replay_choice(Endpoint::chat_completions, choice)).value("content", json("absent")) ==
          choice["message"]["content"]);
  }
  // The final chunk carries the choice's own fields.
  CHECK(replay_choice(Endpoint::chat_completions, json_rich_choice()).back()["native_finish_reason"] == "end_turn");
  check_round_trip(Endpoint::completions, J(R"({"text":"a b","logprobs":null,"finish_reason":"stop","stop_reason":42})"));
}

TEST_CASE("format: a replayed tool-call-only answer rebuilds the message a live stream gave") {
  // An agent sends the rebuilt message back on its next turn: a message that differs
  // (content "" for null, an empty function for a custom call) is another cache key.
  const json live = sdk_message(live_tool_call_stream());
  const json stored = accumulate(Endpoint::chat_completions, live_tool_call_stream());
  auto replayed = replay_choice(Endpoint::chat_completions, stored);
  CHECK(replayed.front()["delta"]["content"].is_null());
  CHECK(sdk_message(replayed) == live);
  // And from the JSON form of the same answer.
  CHECK(sdk_message(replay_choice(Endpoint::chat_completions, json_tool_call_choice())) == live);
  CHECK(sdk_message(replay_choice(Endpoint::chat_completions, json_rich_choice())) == sdk_message(live_rich_stream()));
}

TEST_CASE("format: usage details are split over a call's samples and summed back exactly") {
  const json usage = J(R"({"prompt_tokens":20,"completion_tokens":10,"total_tokens":30,
      "prompt_tokens_details":{"cached_tokens":8,"audio_tokens":0},
      "completion_tokens_details":{"reasoning_tokens":7,"audio_tokens":0,"accepted_prediction_tokens":1,
                                   "rejected_prediction_tokens":0},
      "cost":0.0012})");
  const std::vector<uint32_t> shares = {3, 7};
  auto extras = split_usage_extra(usage, shares);
  REQUIRE(extras.size() == 2);
  for (const json& extra : extras) {
    CHECK_FALSE(extra.contains("prompt_tokens"));
    CHECK(extra["prompt_tokens_details"] == usage["prompt_tokens_details"]);  // the call's, counted once
    CHECK(extra["cost"] == usage["cost"]);
  }
  CHECK(extras[0]["completion_tokens_details"]["reasoning_tokens"].get<uint32_t>() +
            extras[1]["completion_tokens_details"]["reasoning_tokens"].get<uint32_t>() == 7);
  cache::Sample a = sample_of(json::object(), 20, 3), b = sample_of(json::object(), 20, 7);
  a.usage_extra = extras[0];
  b.usage_extra = extras[1];
  CHECK(usage_of(Endpoint::chat_completions, {&a, &b}) == usage);
  CHECK(usage_of(Endpoint::chat_completions, {&b}) ==
        json({{"prompt_tokens", 20}, {"completion_tokens", 7}, {"total_tokens", 27},
              {"prompt_tokens_details", usage["prompt_tokens_details"]}, {"cost", 0.0012},
              {"completion_tokens_details", extras[1]["completion_tokens_details"]}}));
  auto one = split_usage_extra(usage, {10});
  a.completion_tokens = 10;
  a.usage_extra = one[0];
  CHECK(usage_of(Endpoint::chat_completions, {&a}) == usage);
  CHECK(split_usage_extra(J(R"({"prompt_tokens":1,"completion_tokens":2,"total_tokens":3})"), shares) ==
        std::vector<json>(2));
}

TEST_CASE("format: the answer's own fields come back in bodies and in every chunk") {
  const json chunk_in = J(R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",
      "service_tier":"default","system_fingerprint":"fp","provider":"Fake","obfuscation":"xyz","usage":null,
      "choices":[]})");
  const json extra = response_extra_of(chunk_in);
  CHECK(extra == J(R"({"service_tier":"default","provider":"Fake"})"));  // no per-event padding
  CHECK(response_extra_of(J(R"({"id":"x","choices":[],"usage":{}})")).is_null());

  cache::Sample a = sample_of(json_rich_choice(), 9, 4);
  a.response_extra = extra;
  a.usage_extra = J(R"({"completion_tokens_details":{"reasoning_tokens":2}})");
  cache::Sample b = sample_of(json_tool_call_choice(), 9, 3);
  std::vector<const cache::Sample*> samples{&a, &b};
  json body = completion_body(Endpoint::chat_completions, "chatcmpl-x", 5, samples, "m");
  CHECK(body["service_tier"] == "default");
  CHECK(body["provider"] == "Fake");
  CHECK(body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 2);
  CHECK(json::parse(completion_text(Endpoint::chat_completions, "chatcmpl-x", 5, samples, "m")) == body);

  ChunkHead head{Endpoint::chat_completions, "chatcmpl-1", 1, "m", "fp", true, extra};
  json c = chunk(head, 0, J(R"({"delta":{},"logprobs":null,"finish_reason":null})"));
  CHECK(c["service_tier"] == "default");
  CHECK(usage_chunk(head, usage_of(Endpoint::chat_completions, samples))["provider"] == "Fake");
  ChunkEncoder encoder;
  std::string encoded;
  encoder.append(encoded, head, 0, J(R"({"delta":{},"logprobs":null,"finish_reason":null})"));
  CHECK(json::parse(encoded.substr(6)) == c);
  head.extra = nullptr;  // a changed head is written anew
  encoded.clear();
  encoder.append(encoded, head, 0, json::object());
  CHECK_FALSE(json::parse(encoded.substr(6)).contains("service_tier"));
}

TEST_CASE("format: only normal endings are complete answers") {
  for (const char* normal : {"stop", "length", "tool_calls", "function_call", "content_filter"})
    CHECK(normal_finish_reason(normal));
  for (const char* other : {"error", "", "abort", "Stop", "cancelled"}) CHECK_FALSE(normal_finish_reason(other));
}
