// End to end through the real binary: a parameter the OpenAI API would refuse is a 400
// naming it, before anything reaches the upstream, whether the request would be cached,
// answered only from the cache, or relayed (X-Reprise-Cache: bypass).
#include <doctest/doctest.h>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;

TEST_CASE("validation: a bad parameter is a 400 naming it, and the upstream never sees it, cached or bypassed") {
  Stack s;
  struct Case {
    const char* path;
    json body;
    const char* param;
  };
  const json messages = json::array({{{"role", "user"}, {"content", "hi"}}});
  const Case cases[] = {
      {"/v1/chat/completions", {{"model", "gpt-4o-mini"}, {"messages", 5}}, "messages"},
      {"/v1/chat/completions", {{"model", "gpt-4o-mini"}, {"messages", json::array({{{"role", "robot"}}})}}, "messages[0].role"},
      {"/v1/chat/completions", {{"model", "gpt-4o-mini"}, {"messages", messages}, {"temperature", 3}}, "temperature"},
      {"/v1/chat/completions", {{"model", "gpt-4o-mini"}, {"messages", messages}, {"max_tokens", "10"}}, "max_tokens"},
      {"/v1/chat/completions", {{"model", "gpt-4o-mini"}, {"messages", messages}, {"stop", {"a", "b", "c", "d", "e"}}}, "stop"},
      {"/v1/completions", {{"model", "gpt-3.5-turbo-instruct"}, {"prompt", {{"a", 1}}}}, "prompt"},
      {"/v1/embeddings", {{"model", "text-embedding-3-small"}, {"input", 5}}, "input"},
  };
  for (const char* mode : {"use", "only-cached", "bypass"}) {
    for (const Case& c : cases) {
      CAPTURE(mode);
      CAPTURE(c.body.dump());
      auto r = post_json(s.proxy.port(), c.path, c.body, {{"X-Reprise-Cache", mode}});
      CHECK(r.status == 400);
      const json error = r.json()["error"];
      CHECK(error["type"] == "invalid_request_error");
      CHECK(error["param"] == c.param);
    }
  }
  CHECK(s.fake.stats()["calls"] == 0);

  // The control: the same fields, valid, do reach it (and a field the API does not
  // document is the upstream's business).
  json valid = {{"model", "gpt-4o-mini"}, {"messages", messages}, {"temperature", 2}, {"top_k", "any"}};
  CHECK(post_json(s.proxy.port(), "/v1/chat/completions", valid).status == 200);
  CHECK(post_json(s.proxy.port(), "/v1/chat/completions", valid, {{"X-Reprise-Cache", "bypass"}}).status == 200);
  CHECK(s.fake.stats()["calls"] == 2);
}
