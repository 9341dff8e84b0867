// The documented fields of the cached endpoints against the types and ranges the
// OpenAI API accepts (proxy/openai_validate): each row a field set to one value, and
// the param the 400 names ("" when the API accepts it).
#include <doctest/doctest.h>

#include <string>

#include "cache/canonical.hpp"
#include "proxy/openai_validate.hpp"

using namespace reprise;
using nlohmann::json;

namespace {

const json kChat = {{"model", "gpt-4o-mini"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
const json kCompletion = {{"model", "gpt-3.5-turbo-instruct"}, {"prompt", "Once upon"}};
const json kEmbedding = {{"model", "text-embedding-3-small"}, {"input", "hello"}};

struct Row {
  const char* field;
  const char* value;  // JSON text
  const char* param;  // what the 400 names; "" = accepted
};

// The base body with `field` set to `value` (or removed: value "absent").
json with(const json& base, const Row& row) {
  json body = base;
  if (std::string(row.value) == "absent")
    body.erase(row.field);
  else
    body[row.field] = json::parse(row.value);
  return body;
}

void check_rows(Endpoint endpoint, const json& base, std::initializer_list<Row> rows) {
  for (const Row& row : rows) {
    const json body = with(base, row);
    auto error = validate_request(endpoint, body);
    CAPTURE(body.dump());
    if (std::string(row.param).empty()) {
      CHECK_MESSAGE(!error, (error ? error->message : ""));
    } else {
      REQUIRE(error);
      CHECK(error->kind == ErrorKind::bad_request);
      CHECK(error->param == row.param);
      CHECK(to_http_status(*error) == 400);
      CHECK(error->message.find(row.param) != std::string::npos);
    }
  }
}

}  // namespace

TEST_CASE("validate: chat completions' documented fields") {
  check_rows(Endpoint::chat_completions, kChat,
             {
                 {"messages", "5", "messages"},
                 {"messages", "\"hi\"", "messages"},
                 {"messages", "[]", "messages"},
                 {"messages", "null", "messages"},
                 {"messages", "absent", "messages"},
                 {"messages", "[5]", "messages[0]"},
                 {"messages", R"([{"content":"hi"}])", "messages[0].role"},
                 {"messages", R"([{"role":"user","content":"a"},{"role":"wizard","content":"b"}])", "messages[1].role"},
                 {"messages", R"([{"role":7,"content":"a"}])", "messages[0].role"},
                 {"messages", R"([{"role":"user","content":5}])", "messages[0].content"},
                 {"messages", R"([{"role":"user","content":[{"type":"text","text":"a"}]}])", ""},
                 {"messages", R"([{"role":"assistant","content":null,"tool_calls":[]},{"role":"tool","content":"r","tool_call_id":"x"}])", ""},
                 {"messages", R"([{"role":"developer","content":"d"},{"role":"system","content":"s"},{"role":"function","name":"f","content":"c"}])", ""},
                 {"model", "absent", "model"},
                 {"model", "5", "model"},
                 {"model", "\"\"", "model"},
                 {"n", "0", "n"},
                 {"n", "129", "n"},
                 {"n", "1.5", "n"},
                 {"n", "\"2\"", "n"},
                 {"n", "128", ""},
                 {"n", "2.0", ""},
                 {"n", "null", ""},
                 {"temperature", "-0.1", "temperature"},
                 {"temperature", "2.01", "temperature"},
                 {"temperature", "\"1\"", "temperature"},
                 {"temperature", "true", "temperature"},
                 {"temperature", "0", ""},
                 {"temperature", "2", ""},
                 {"top_p", "1.5", "top_p"},
                 {"top_p", "0.5", ""},
                 {"max_tokens", "0", "max_tokens"},
                 {"max_tokens", "-1", "max_tokens"},
                 {"max_tokens", "2.5", "max_tokens"},
                 {"max_tokens", "\"10\"", "max_tokens"},
                 {"max_tokens", "1", ""},
                 {"max_completion_tokens", "0", "max_completion_tokens"},
                 {"max_completion_tokens", "100000", ""},
                 {"stop", "5", "stop"},
                 {"stop", R"(["a","b","c","d","e"])", "stop"},
                 {"stop", R"(["a",1])", "stop"},
                 {"stop", "\"\\n\"", ""},
                 {"stop", R"(["a","b","c","d"])", ""},
                 {"seed", "1.5", "seed"},
                 {"seed", "\"1\"", "seed"},
                 {"seed", "-42", ""},
                 {"tools", "{}", "tools"},
                 {"tools", "[5]", "tools"},
                 {"tools", R"([{"type":"function","function":{"name":"f"}}])", ""},
                 {"tool_choice", "5", "tool_choice"},
                 {"tool_choice", "\"auto\"", ""},
                 {"tool_choice", R"({"type":"function","function":{"name":"f"}})", ""},
                 {"parallel_tool_calls", "\"yes\"", "parallel_tool_calls"},
                 {"response_format", "\"json\"", "response_format"},
                 {"response_format", R"({"type":"json_object"})", ""},
                 {"logprobs", "1", "logprobs"},
                 {"logprobs", "true", ""},
                 {"top_logprobs", "21", "top_logprobs"},
                 {"top_logprobs", "-1", "top_logprobs"},
                 {"top_logprobs", "20", ""},
                 {"presence_penalty", "2.5", "presence_penalty"},
                 {"presence_penalty", "-2", ""},
                 {"frequency_penalty", "-3", "frequency_penalty"},
                 {"frequency_penalty", "\"0\"", "frequency_penalty"},
                 {"logit_bias", "[]", "logit_bias"},
                 {"logit_bias", R"({"50256":101})", "logit_bias"},
                 {"logit_bias", R"({"50256":"x"})", "logit_bias"},
                 {"logit_bias", R"({"50256":-100})", ""},
                 {"stream", "\"true\"", "stream"},
                 {"stream", "true", ""},
                 {"stream_options", "true", "stream_options"},
                 {"stream_options", R"({"include_usage":"yes"})", "stream_options.include_usage"},
                 {"stream_options", R"({"include_usage":true})", ""},
                 {"user", "5", "user"},
                 {"user", "\"u-1\"", ""},
                 {"functions", "5", "functions"},
                 {"function_call", "[]", "function_call"},
                 {"modalities", R"(["text",1])", "modalities"},
                 {"reasoning_effort", "1", "reasoning_effort"},
                 {"reasoning_effort", "\"low\"", ""},
                 {"metadata", "\"x\"", "metadata"},
                 {"store", "1", "store"},
                 // Fields the API does not document are an upstream's business.
                 {"top_k", "\"anything\"", ""},
                 {"repetition_penalty", "[1]", ""},
             });
}

TEST_CASE("validate: legacy completions' documented fields") {
  check_rows(Endpoint::completions, kCompletion,
             {
                 {"prompt", "absent", "prompt"},
                 {"prompt", "5", "prompt"},
                 {"prompt", "{}", "prompt"},
                 {"prompt", R"(["a",1])", "prompt"},
                 {"prompt", R"([[1,2],"a"])", "prompt"},
                 {"prompt", "\"\"", ""},
                 {"prompt", R"(["a","b"])", ""},
                 {"prompt", "[1,2,3]", ""},
                 {"prompt", "[[1,2],[3]]", ""},
                 {"max_tokens", "-1", "max_tokens"},
                 {"max_tokens", "0", ""},  // with echo: the prompt's logprobs only
                 {"logprobs", "true", "logprobs"},
                 {"logprobs", "6", "logprobs"},
                 {"logprobs", "5", ""},
                 {"echo", "1", "echo"},
                 {"best_of", "21", "best_of"},
                 {"best_of", "3", ""},
                 {"suffix", "5", "suffix"},
                 {"temperature", "3", "temperature"},
                 {"stop", R"(["a","b","c","d","e"])", "stop"},
                 {"n", "0", "n"},
                 {"model", "null", "model"},
             });
}

TEST_CASE("validate: embeddings' documented fields") {
  check_rows(Endpoint::embeddings, kEmbedding,
             {
                 {"input", "absent", "input"},
                 {"input", "5", "input"},
                 {"input", "\"\"", "input"},
                 {"input", "[]", "input"},
                 {"input", R"(["a",""])", "input"},
                 {"input", R"(["a",1])", "input"},
                 {"input", "[[]]", "input"},
                 {"input", R"(["a","b"])", ""},
                 {"input", "[1,2]", ""},
                 {"input", "[[1,2],[3]]", ""},
                 {"encoding_format", "\"hex\"", "encoding_format"},
                 {"encoding_format", "\"base64\"", ""},
                 {"dimensions", "0", "dimensions"},
                 {"dimensions", "256", ""},
                 {"model", "\"\"", "model"},
             });
  json many = kEmbedding;
  many["input"] = json::array();
  for (int i = 0; i < 2049; ++i) many["input"].push_back("x");
  auto error = validate_request(Endpoint::embeddings, many);
  REQUIRE(error);
  CHECK(error->param == "input");
  many["input"].erase(many["input"].size() - 1);
  CHECK_FALSE(validate_request(Endpoint::embeddings, many));
}

TEST_CASE("validate: the messages say what was expected and what came, in the API's words") {
  auto error = validate_request(Endpoint::chat_completions, with(kChat, {"messages", "5", ""}));
  REQUIRE(error);
  CHECK(error->message == "Invalid type for 'messages': expected a non-empty array of messages, but got an integer instead.");
  error = validate_request(Endpoint::chat_completions, with(kChat, {"temperature", "3", ""}));
  REQUIRE(error);
  CHECK(error->message == "Invalid value for 'temperature': expected a number from 0 to 2, but got 3 instead.");
  error = validate_request(Endpoint::chat_completions, with(kChat, {"messages", "absent", ""}));
  REQUIRE(error);
  CHECK(error->message == "Missing required parameter: 'messages'.");
  // A long value is quoted short, never echoed whole.
  error = validate_request(Endpoint::chat_completions,
                           with(kChat, {"messages", (R"([{"role":")" + std::string(10000, 'x') + R"("}])").c_str(), ""}));
  REQUIRE(error);
  CHECK(error->message.size() < 200);
}

TEST_CASE("validate: the canonical form of a valid request passes (the cached path checks it)") {
  // Canonicalisation takes n, stream, stream_options and user out and fills in the
  // API's defaults: what remains must pass the same table.
  json chat = kChat;
  chat["n"] = 3;
  chat["stream"] = true;
  chat["stream_options"] = {{"include_usage", true}};
  chat["user"] = "u";
  for (auto [endpoint, cache_endpoint, body] :
       {std::tuple{Endpoint::chat_completions, cache::Endpoint::chat_completions, chat},
        std::tuple{Endpoint::completions, cache::Endpoint::completions, kCompletion},
        std::tuple{Endpoint::embeddings, cache::Endpoint::embeddings, kEmbedding}}) {
    auto canonical = cache::canonicalize(cache_endpoint, body.dump());
    REQUIRE(canonical);
    CAPTURE(canonical->text);
    CHECK_FALSE(validate_request(endpoint, canonical->body));
    CHECK_FALSE(validate_request(endpoint, body));
  }
  // `user` never reaches the table on the cached path: canonicalisation checks it.
  auto user = cache::canonicalize(cache::Endpoint::chat_completions, R"({"model":"m","user":5})");
  REQUIRE_FALSE(user);
  CHECK(user.error().param == "user");
  // Other endpoints have no table.
  CHECK_FALSE(validate_request(Endpoint::passthrough, json{{"messages", 5}}));
}
