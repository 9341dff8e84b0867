#include <doctest/doctest.h>

#include "proxy/routes.hpp"

using namespace reprise;

TEST_CASE("OpenAI routes, with and without a namespace prefix") {
  auto r = parse_route("/v1/chat/completions");
  REQUIRE(r.ok());
  CHECK(r->endpoint == Endpoint::chat_completions);
  CHECK(r->ns == "default");
  CHECK_FALSE(r->ns_from_path);
  CHECK(r->upstream_target == "/chat/completions");

  r = parse_route("/ns/exp-1.a_b:c/v1/completions?x=1");
  REQUIRE(r.ok());
  CHECK(r->endpoint == Endpoint::completions);
  CHECK(r->ns == "exp-1.a_b:c");
  CHECK(r->ns_from_path);
  CHECK(r->upstream_target == "/completions?x=1");

  CHECK(parse_route("/v1/embeddings")->endpoint == Endpoint::embeddings);
  CHECK(parse_route("/v1/models")->endpoint == Endpoint::models_list);
  r = parse_route("/ns/a/v1/models/ft%3Agpt-4o%3Aacme");
  CHECK(r->endpoint == Endpoint::model_get);
  CHECK(r->model_id == "ft:gpt-4o:acme");
  CHECK(parse_route("/v1/files/abc")->endpoint == Endpoint::passthrough);
  CHECK(parse_route("/v1/files/abc")->upstream_target == "/files/abc");
  CHECK(parse_route("/v1")->endpoint == Endpoint::passthrough);
}

TEST_CASE("paths outside /v1 are not found - bad namespaces are refused") {
  CHECK(parse_route("/")->endpoint == Endpoint::not_found);
  CHECK(parse_route("/v10/chat/completions")->endpoint == Endpoint::not_found);
  CHECK(parse_route("/ns/a/v2/x")->endpoint == Endpoint::not_found);
  CHECK(parse_route("/ns/a")->endpoint == Endpoint::not_found);
  CHECK_FALSE(parse_route("/ns//v1/models").ok());
  CHECK_FALSE(parse_route("/ns/a%2Fb/v1/models").ok());
  CHECK_FALSE(parse_route("/ns/a b/v1/models").ok());
  CHECK(parse_route("/ns/a%2Fb/v1/models").error().kind == ErrorKind::bad_request);
  CHECK_FALSE(parse_route("/ns/" + std::string(129, 'a') + "/v1/models").ok());
  CHECK(parse_route("/ns/" + std::string(128, 'a') + "/v1/models").ok());
  CHECK_FALSE(parse_route("/v1/models/%zz").ok());
}

TEST_CASE("glob matching") {
  CHECK(glob_match("*", ""));
  CHECK(glob_match("*", "gpt-4o"));
  CHECK(glob_match("gpt-*", "gpt-4o-mini"));
  CHECK_FALSE(glob_match("gpt-*", "o1-mini"));
  CHECK(glob_match("*-mini", "gpt-4o-mini"));
  CHECK(glob_match("gpt-?o", "gpt-4o"));
  CHECK_FALSE(glob_match("gpt-?o", "gpt-44o"));
  CHECK(glob_match("llama-[0-9]*", "llama-3.1-8b"));
  CHECK_FALSE(glob_match("llama-[!0-9]*", "llama-3.1-8b"));
  CHECK(glob_match("a*b*c", "axxbyyc"));
  CHECK_FALSE(glob_match("a*b*c", "axxbyy"));
  CHECK(glob_match("exact", "exact"));
  CHECK_FALSE(glob_match("exact", "exactly"));
  CHECK(glob_match("[ab", "[ab"));  // an unterminated set is literal
  // Pathological patterns stay linear-ish, not exponential.
  CHECK_FALSE(glob_match("*a*a*a*a*a*a*a*a*b", std::string(2000, 'a')));
}

TEST_CASE("the first matching [[models]] route wins") {
  std::vector<ModelRoute> routes = {{"gpt-*", "openai"}, {"llama*", "engine"}, {"*", "other"}};
  CHECK(route_model(routes, "gpt-4o")->backend == "openai");
  CHECK(route_model(routes, "llama-3")->backend == "engine");
  CHECK(route_model(routes, "claude")->backend == "other");
  std::vector<ModelRoute> narrow = {{"gpt-*", "openai"}};
  CHECK(route_model(narrow, "claude") == nullptr);
}

TEST_CASE("the query: kept for the upstream, reduced for the key, credentials never in clear") {
  auto r = parse_route("/v1/chat/completions?api-version=2024-10-21");
  REQUIRE(r.ok());
  CHECK(r->query == "api-version=2024-10-21");
  CHECK(r->upstream_target == "/chat/completions?api-version=2024-10-21");
  CHECK(parse_route("/v1/chat/completions")->query.empty());

  // Sorted by name (order of repeated names kept), credentials out.
  CHECK(key_query("b=2&a=1") == "a=1&b=2");
  CHECK(key_query("a=2&b=0&a=1") == "a=2&a=1&b=0");
  CHECK(key_query("api-version=X&key=secret") == "api-version=X");
  CHECK(key_query("k%65y=secret&x=1") == "x=1");  // the name as a server decodes it
  CHECK(key_query("key=secret").empty());
  CHECK(key_query("").empty());
  CHECK(key_query("&&a=1&") == "a=1");

  CHECK(query_values("key=k1&x=1&key=k2", "key") == std::vector<std::string_view>{"k1", "k2"});
  CHECK(query_values("k%65y=k3", "key") == std::vector<std::string_view>{"k3"});
  CHECK(query_values("keys=1&akey=2", "key").empty());

  CHECK(redacted_target("/v1beta/models/m:generateContent?key=AIza-secret&alt=sse") ==
        "/v1beta/models/m:generateContent?key=REDACTED&alt=sse");
  CHECK(redacted_target("/v1/chat/completions?api-version=1") == "/v1/chat/completions?api-version=1");
  CHECK(redacted_target("/v1/models") == "/v1/models");
}

TEST_CASE("the other dialects' routes: Responses, Anthropic Messages, Gemini, each under /ns/{ns} too") {
  auto r = parse_route("/ns/run-1/v1/responses");
  REQUIRE(r.ok());
  CHECK(r->endpoint == Endpoint::responses);
  CHECK(r->ns == "run-1");
  CHECK(r->upstream_target == "/responses");
  r = parse_route("/v1/responses/resp_abc");
  CHECK(r->endpoint == Endpoint::responses_get);
  CHECK(r->model_id == "resp_abc");
  CHECK(parse_route("/v1/responses/resp_abc/cancel")->endpoint == Endpoint::passthrough);
  CHECK(parse_route("/v1/responses/resp_abc/input_items")->endpoint == Endpoint::passthrough);

  r = parse_route("/ns/x/v1/messages?beta=true");  // the Anthropic SDK's base URL is /ns/x
  CHECK(r->endpoint == Endpoint::messages);
  CHECK(r->query == "beta=true");
  CHECK(r->upstream_target == "/messages?beta=true");
  CHECK(parse_route("/v1/messages/count_tokens")->endpoint == Endpoint::passthrough);

  r = parse_route("/ns/x/v1beta/models/gemini-2.0-flash:generateContent?key=k");
  CHECK(r->endpoint == Endpoint::gemini);
  CHECK(r->gemini_api);
  CHECK(r->model_id == "gemini-2.0-flash");
  CHECK_FALSE(r->path_stream);
  CHECK(r->upstream_target == "/models/gemini-2.0-flash:generateContent?key=k");
  r = parse_route("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
  CHECK(r->endpoint == Endpoint::gemini);
  CHECK(r->path_stream);
  CHECK(r->query == "alt=sse");
  r = parse_route("/v1beta/models/gemini-2.0-flash:countTokens");
  CHECK(r->endpoint == Endpoint::passthrough);
  CHECK(r->gemini_api);
  CHECK(parse_route("/v1beta/models")->endpoint == Endpoint::passthrough);
  CHECK_FALSE(parse_route("/v1beta/models/a%2Fb:generateContent").ok());
  // @google/genai 3 calls the /v1 form by default.
  r = parse_route("/ns/x/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
  CHECK(r->endpoint == Endpoint::gemini);
  CHECK(r->model_id == "gemini-2.0-flash");
  CHECK(r->path_stream);
  CHECK(r->ns == "x");
  CHECK(parse_route("/v1/models/gemini-2.0-flash")->endpoint == Endpoint::model_get);
}
