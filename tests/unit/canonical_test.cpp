// The canonical request, the tenant and the cache key (DESIGN.md section 1).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/canonical.hpp"

using namespace reprise::cache;
using nlohmann::json;

namespace {

const json kChat = {{"model", "gpt-4o-mini"},
                    {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
const json kCompletion = {{"model", "gpt-3.5-turbo-instruct"}, {"prompt", "Say hi"}};
const json kEmbedding = {{"model", "text-embedding-3-small"}, {"input", "hello"}};

CanonicalRequest canon_ok(Endpoint endpoint, const std::string& body) {
  auto result = canonicalize(endpoint, body);
  INFO("body: " << body << "  error: " << (result.ok() ? "" : result.error().message));
  REQUIRE(result.ok());
  return result.value();
}

CanonicalRequest canon_ok(Endpoint endpoint, const json& body) {
  return canon_ok(endpoint, body.dump());
}

CanonicalError canon_err(Endpoint endpoint, const std::string& body) {
  auto result = canonicalize(endpoint, body);
  INFO("body: " << body);
  REQUIRE_FALSE(result.ok());
  return result.error();
}

const TenantId& tenant_a() {
  static const TenantId tenant = tenant_of("server secret", "sk-alice");
  return tenant;
}

CacheKey key_of(Endpoint endpoint, const std::string& body, const TenantId& tenant = tenant_a()) {
  return cache_key(tenant, endpoint, canon_ok(endpoint, body));
}

CacheKey key_of(Endpoint endpoint, const json& body, const TenantId& tenant = tenant_a()) {
  return key_of(endpoint, body.dump(), tenant);
}

json with(json body, const std::string& field, json value) {
  body[field] = std::move(value);
  return body;
}

std::string hex(const CacheKey& key) { return to_hex(key.bytes); }

}  // namespace

TEST_CASE("canonical: endpoint names") {
  CHECK(endpoint_name(Endpoint::chat_completions) == "chat.completions");
  CHECK(endpoint_name(Endpoint::completions) == "completions");
  CHECK(endpoint_name(Endpoint::embeddings) == "embeddings");
}

TEST_CASE("canonical: exact text, defaults made explicit, numbers and keys normalised") {
  auto c = canon_ok(Endpoint::chat_completions,
                    std::string(R"( { "temperature" : 1.0, "model":"m", "messages":[ ],
                                      "x": {"b": 2.50, "a": -0.0, "c": "é\u00e9"} } )"));
  CHECK(c.text ==
        R"({"frequency_penalty":0,"logprobs":false,"messages":[],"model":"m",)"
        R"("presence_penalty":0,"temperature":1,"top_p":1,"x":{"a":0,"b":2.5,"c":"éé"}})");
  CHECK(c.sha256 == sha256_of(c.text));
  CHECK(c.model == "m");
  CHECK(c.n == 1);
  CHECK_FALSE(c.stream);
  CHECK_FALSE(c.include_usage);
  REQUIRE(c.temperature.has_value());
  CHECK(*c.temperature == 1.0);

  auto completion = canon_ok(Endpoint::completions, std::string(R"({"model":"m","prompt":"p"})"));
  CHECK(completion.text ==
        R"({"echo":false,"frequency_penalty":0,"model":"m","presence_penalty":0,)"
        R"("prompt":"p","temperature":1,"top_p":1})");

  // Embeddings have no sampling defaults.
  auto embedding = canon_ok(Endpoint::embeddings, std::string(R"({"model":"m","input":"x"})"));
  CHECK(embedding.text == R"({"input":"x","model":"m"})");
  CHECK(embedding.encoding_format == "float");
}

TEST_CASE("canonical: every sampling parameter changes the key") {
  struct Row {
    Endpoint endpoint;
    const json* base;
    std::string field;
    json a;
    json b;   // null: only one alternative to the base
  };
  const json tool_a = {{"type", "function"},
                       {"function", {{"name", "f"}, {"parameters", {{"type", "object"}}}}}};
  const json tool_b = {{"type", "function"},
                       {"function", {{"name", "g"}, {"parameters", {{"type", "object"}}}}}};
  const auto chat = Endpoint::chat_completions;
  const std::vector<Row> rows = {
      {chat, &kChat, "temperature", 0.5, 0},
      {chat, &kChat, "top_p", 0.9, 0.5},
      {chat, &kChat, "max_tokens", 16, 32},
      {chat, &kChat, "max_completion_tokens", 16, 32},
      {chat, &kChat, "stop", "\n", json::array({"END"})},
      {chat, &kChat, "seed", 1, 2},
      {chat, &kChat, "tools", json::array({tool_a}), json::array({tool_b})},
      {chat, &kChat, "tool_choice", "none", "required"},
      {chat, &kChat, "response_format", {{"type", "json_object"}}, {{"type", "text"}}},
      {chat, &kChat, "logprobs", true, nullptr},
      {chat, &kChat, "top_logprobs", 1, 5},
      {chat, &kChat, "presence_penalty", 0.5, -0.5},
      {chat, &kChat, "frequency_penalty", 0.5, 1},
      {chat, &kChat, "logit_bias", {{"50256", -100}}, {{"50256", 100}}},
      {chat, &kChat, "model", "gpt-4o", "o1"},
      {chat, &kChat, "messages", json::array({{{"role", "user"}, {"content", "hello"}}}),
       json::array({{{"role", "system"}, {"content", "hi"}}})},
      {chat, &kChat, "reasoning_effort", "low", "high"},   // unknown fields pass through
      {Endpoint::completions, &kCompletion, "prompt", "Say bye", json::array({"Say hi"})},
      {Endpoint::completions, &kCompletion, "temperature", 0, 2},
      {Endpoint::completions, &kCompletion, "max_tokens", 5, 6},
      {Endpoint::completions, &kCompletion, "echo", true, nullptr},
      {Endpoint::completions, &kCompletion, "suffix", "!", "?"},
      {Endpoint::embeddings, &kEmbedding, "input", "bye", json::array({"hello"})},
      {Endpoint::embeddings, &kEmbedding, "dimensions", 256, 512},
      {Endpoint::embeddings, &kEmbedding, "model", "text-embedding-3-large", "ada"},
  };
  for (const auto& row : rows) {
    INFO("field: " << row.field << " = " << row.a.dump() << " / " << row.b.dump());
    const CacheKey base = key_of(row.endpoint, *row.base);
    const CacheKey a = key_of(row.endpoint, with(*row.base, row.field, row.a));
    CHECK(a != base);
    if (row.b.is_null()) continue;
    const CacheKey b = key_of(row.endpoint, with(*row.base, row.field, row.b));
    CHECK(b != base);
    CHECK(b != a);
  }
}

TEST_CASE("canonical: n, stream, stream_options and user stay out of the key and the body") {
  const auto chat = Endpoint::chat_completions;
  const auto base = canon_ok(chat, kChat);
  json noisy = kChat;
  noisy["n"] = 7;
  noisy["stream"] = true;
  noisy["stream_options"] = {{"include_usage", true}};
  noisy["user"] = "user-1234";
  const auto c = canon_ok(chat, noisy);
  CHECK(c.text == base.text);
  CHECK(cache_key(tenant_a(), chat, c) == cache_key(tenant_a(), chat, base));
  for (const char* field : {"n", "stream", "stream_options", "user"}) {
    INFO(field);
    CHECK_FALSE(c.body.contains(field));
  }
  // ...but the proxy still reads them.
  CHECK(c.n == 7);
  CHECK(c.stream);
  CHECK(c.include_usage);

  // null is the same as absent for the fields the proxy reads.
  const auto nulls = canon_ok(chat, std::string(R"({"model":"gpt-4o-mini","messages":)"
                                                R"([{"role":"user","content":"hi"}],"n":null,)"
                                                R"("stream":null,"temperature":null,"top_p":null})"));
  CHECK(nulls.text == base.text);
  CHECK(nulls.n == 1);
  CHECK_FALSE(nulls.temperature.has_value());
}

TEST_CASE("canonical: embeddings' encoding_format stays out of the key") {
  const auto e = Endpoint::embeddings;
  const CacheKey absent = key_of(e, kEmbedding);
  const auto as_float = canon_ok(e, with(kEmbedding, "encoding_format", "float"));
  const auto as_base64 = canon_ok(e, with(kEmbedding, "encoding_format", "base64"));
  CHECK(cache_key(tenant_a(), e, as_float) == absent);
  CHECK(cache_key(tenant_a(), e, as_base64) == absent);
  CHECK(as_float.encoding_format == "float");
  CHECK(as_base64.encoding_format == "base64");
  CHECK_FALSE(as_base64.body.contains("encoding_format"));
}

TEST_CASE("canonical: 1, 1.0 and 1e0 are the same number, at the top and nested") {
  const auto chat = Endpoint::chat_completions;
  const std::string head = R"({"model":"m","messages":[{"role":"user","content":"hi"}],)";
  const std::vector<std::string> spellings = {"100", "100.0", "1e2", "1E+2", "1000e-1", "100.000"};
  std::vector<std::string> texts;
  for (const auto& s : spellings) {
    INFO(s);
    texts.push_back(canon_ok(chat, head + R"("max_tokens":)" + s + R"(,"logit_bias":{"50256":-)" + s +
                                       R"(},"tools":[{"type":"function","function":{"name":"f",)"
                                       R"("parameters":{"maxItems":)" + s + R"(}}}]})")
                        .text);
    CHECK(texts.back() == texts.front());
  }
  CHECK(texts.front().find(R"("max_tokens":100,)") != std::string::npos);
  CHECK(texts.front().find(R"("50256":-100})") != std::string::npos);
  CHECK(texts.front().find(R"("maxItems":100})") != std::string::npos);

  // Fractions stay fractions, in their shortest round-trip spelling; -0.0 is 0.
  CHECK(key_of(chat, head + R"("top_p":0.50})") == key_of(chat, head + R"("top_p":5e-1})"));
  CHECK(key_of(chat, head + R"("top_p":0.5})") != key_of(chat, head + R"("top_p":0.51})"));
  CHECK(key_of(chat, head + R"("seed":-0.0})") == key_of(chat, head + R"("seed":0})"));
  CHECK(canon_ok(chat, head + R"("x":0.1})").text.find(R"("x":0.1)") != std::string::npos);
  // Integral beyond int64: one form whether written as an integer or as a double.
  CHECK(key_of(chat, head + R"("x":10000000000000000000})") ==
        key_of(chat, head + R"("x":1e19})"));
}

TEST_CASE("canonical: key order and whitespace do not change the key") {
  const auto chat = Endpoint::chat_completions;
  const std::string a =
      R"({"model":"m","temperature":0.3,"messages":[{"role":"user","content":"hi"}]})";
  const std::string b =
      "{\n  \"messages\" : [ { \"content\" : \"hi\" ,\t\"role\" : \"user\" } ],\r\n"
      "  \"temperature\": 0.3, \"model\": \"m\"\n}\n";
  CHECK(key_of(chat, a) == key_of(chat, b));
  // Array order does matter: it is content.
  CHECK(key_of(chat, std::string(R"({"model":"m","stop":["a","b"]})")) !=
        key_of(chat, std::string(R"({"model":"m","stop":["b","a"]})")));
}

TEST_CASE("canonical: absent temperature has the key of temperature 1, but the request tells them apart") {
  const auto chat = Endpoint::chat_completions;
  const auto absent = canon_ok(chat, kChat);
  const auto one = canon_ok(chat, with(kChat, "temperature", 1));
  const auto one_point_zero = canon_ok(chat, std::string(R"({"model":"gpt-4o-mini","messages":)"
                                                         R"([{"role":"user","content":"hi"}],)"
                                                         R"("temperature":1.0})"));
  const auto zero = canon_ok(chat, with(kChat, "temperature", 0));
  CHECK(cache_key(tenant_a(), chat, absent) == cache_key(tenant_a(), chat, one));
  CHECK(cache_key(tenant_a(), chat, absent) == cache_key(tenant_a(), chat, one_point_zero));
  CHECK(cache_key(tenant_a(), chat, absent) != cache_key(tenant_a(), chat, zero));
  CHECK_FALSE(absent.temperature.has_value());
  REQUIRE(one.temperature.has_value());
  CHECK(*one.temperature == 1.0);
  REQUIRE(zero.temperature.has_value());
  CHECK(*zero.temperature == 0.0);
  CHECK(absent.body["temperature"] == 1);
}

namespace {

// Random JSON for the property test: values of every kind, strings that need escapes.
class RandomJson {
 public:
  explicit RandomJson(uint32_t seed) : rng_(seed) {}

  json value(int depth) {
    switch (pick(depth > 3 ? 5 : 7)) {
      case 0: return nullptr;
      case 1: return pick(2) == 1;
      case 2: return static_cast<int64_t>(pick(2001)) - 1000;
      case 3: return fraction();
      case 4: return text();
      case 5: {
        json array = json::array();
        for (int i = pick(4); i > 0; --i) array.push_back(value(depth + 1));
        return array;
      }
      default: return object(depth + 1);
    }
  }

  json object(int depth) {
    static const char* const keys[] = {"a", "b", "role", "content", "zeta", "é", "Z", "a b", "\"q\""};
    json object = json::object();
    for (int i = pick(5); i > 0; --i) object[keys[pick(9)]] = value(depth);
    return object;
  }

  // The same value spelled another way: keys shuffled, whitespace, other number forms,
  // \u escapes.
  std::string respell(const json& v) {
    if (v.is_object()) {
      std::vector<std::string> parts;
      for (const auto& [k, item] : v.items()) parts.push_back(string(k) + space() + ":" + space() + respell(item));
      std::shuffle(parts.begin(), parts.end(), rng_);
      return wrap('{', join(parts), '}');
    }
    if (v.is_array()) {
      std::vector<std::string> parts;
      for (const auto& item : v) parts.push_back(respell(item));
      return wrap('[', join(parts), ']');
    }
    if (v.is_string()) return string(v.get<std::string>());
    if (v.is_number_integer()) return integer(v.get<int64_t>());
    if (v.is_number_float()) return real(v.get<double>());
    return v.dump();
  }

  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

 private:
  json fraction() {
    switch (pick(3)) {
      case 0: return -0.0;
      case 1: return static_cast<double>(pick(100));   // integral: must become an integer
      default: return std::uniform_real_distribution<double>(-1e6, 1e6)(rng_);
    }
  }
  json text() {
    static const char* const texts[] = {"", "hi", "é日本", "tab\there", "quote\"back\\slash",
                                        "nl\n", "\x01", "emoji \xF0\x9F\x98\x80"};
    return texts[pick(8)];
  }
  std::string string(const std::string& s) {
    return json(s).dump(-1, ' ', pick(2) == 1);   // sometimes every non-ASCII as \u
  }
  std::string integer(int64_t i) {
    switch (pick(4)) {
      case 0: return std::to_string(i) + ".0";
      case 1: return std::to_string(i) + "e0";
      case 2: return std::to_string(i) + "0e-1";
      default: return std::to_string(i);
    }
  }
  std::string real(double d) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, pick(2) ? "%.17g" : "%.17e", d);
    return buffer;
  }
  std::string space() {
    static const char* const spaces[] = {"", " ", "\n", "\t ", "\r\n  "};
    return spaces[pick(5)];
  }
  // Appends rather than operator+ chains: GCC 12 warns falsely (-Wrestrict) on those.
  std::string wrap(char open, const std::string& inside, char close) {
    std::string out(1, open);
    out.append(space()).append(inside).append(space());
    out.push_back(close);
    return out;
  }
  static std::string join(const std::vector<std::string>& parts) {
    std::string out;
    for (size_t i = 0; i < parts.size(); ++i) {
      if (i) out.push_back(',');
      out.append(parts[i]);
    }
    return out;
  }
  std::mt19937 rng_;
};

}  // namespace

TEST_CASE("canonical: idempotent, and blind to spelling, over random bodies") {
  RandomJson random(20250601);
  for (int round = 0; round < 60; ++round) {
    const auto endpoint = static_cast<Endpoint>(round % 3);
    json body = random.object(0);
    body["model"] = "model-" + std::to_string(round);
    body["payload"] = random.value(0);
    const auto plain = canon_ok(endpoint, body);
    INFO("round " << round << ": " << plain.text);

    const auto again = canon_ok(endpoint, plain.text);
    CHECK(again.text == plain.text);
    CHECK(again.sha256 == plain.sha256);

    // Respelled, with excluded fields thrown in: still the same text.
    json noisy = body;
    if (random.pick(2)) noisy["n"] = 1 + random.pick(128);
    if (random.pick(2)) noisy["user"] = "someone";
    if (random.pick(2)) noisy["stream"] = random.pick(2) == 1;
    const auto respelled = canon_ok(endpoint, random.respell(noisy));
    CHECK(respelled.text == plain.text);
    CHECK(cache_key(tenant_a(), endpoint, respelled) == cache_key(tenant_a(), endpoint, plain));
  }
}

TEST_CASE("canonical: duplicate keys are refused, naming the key") {
  const auto chat = Endpoint::chat_completions;
  auto top = canon_err(chat, R"({"model":"m","temperature":1,"messages":[],"temperature":0})");
  CHECK(top.message == R"(duplicate key "temperature" in request body)");
  CHECK(top.param == "temperature");

  auto nested = canon_err(chat, R"({"model":"m","messages":[{"role":"user","role":"system"}]})");
  CHECK(nested.message == R"(duplicate key "role" in request body)");

  auto deep = canon_err(chat, R"({"model":"m","tools":[{"function":{"parameters":{"a":1,"b":2,"a":1}}}]})");
  CHECK(deep.message.find(R"("a")") != std::string::npos);

  // The same key in sibling objects, or at different depths, is no duplicate.
  canon_ok(chat, std::string(R"({"model":"m","a":{"x":1,"model":2},"b":{"x":1},"c":[{"x":1},{"x":2}]})"));
}

TEST_CASE("canonical: malformed bodies are errors with the right param") {
  const auto chat = Endpoint::chat_completions;
  auto invalid = canon_err(chat, R"({"model":"m",)");
  CHECK(invalid.message.rfind("request body is not valid JSON: ", 0) == 0);
  CHECK(invalid.message.find("json.exception") == std::string::npos);
  CHECK(invalid.param.empty());
  CHECK(canon_err(chat, "").message.rfind("request body is not valid JSON", 0) == 0);
  CHECK(canon_err(chat, R"({"model":"m"} x)").message.rfind("request body is not valid JSON", 0) == 0);
  CHECK(canon_err(chat, "{\"model\":\"m\xff\"}").message.rfind("request body is not valid JSON", 0) == 0);
  CHECK(canon_err(chat, R"({"model":"\ud800"})").message.rfind("request body is not valid JSON", 0) == 0);
  CHECK(canon_err(chat, R"({"model":"m","x":1e999})").message.rfind("request body is not valid JSON", 0) == 0);

  for (const char* not_object : {"[]", R"("model")", "42", "null"}) {
    INFO(not_object);
    CHECK(canon_err(chat, not_object).message == "request body must be a JSON object");
  }

  for (const char* body : {R"({"messages":[]})", R"({"model":""})", R"({"model":5})", R"({"model":null})"}) {
    INFO(body);
    CHECK(canon_err(chat, body).param == "model");
  }

  for (const char* n : {"0", "129", "1.5", R"("2")", "-1", "true", "[2]", "18446744073709551615"}) {
    INFO("n = " << n);
    CHECK(canon_err(chat, std::string(R"({"model":"m","n":)") + n + "}").param == "n");
  }
  CHECK(canon_ok(chat, std::string(R"({"model":"m","n":128})")).n == 128);
  CHECK(canon_ok(chat, std::string(R"({"model":"m","n":2.0})")).n == 2);

  for (const char* format : {R"("int8")", "5", R"("FLOAT")"}) {
    INFO("encoding_format = " << format);
    CHECK(canon_err(Endpoint::embeddings,
                    std::string(R"({"model":"m","input":"x","encoding_format":)") + format + "}")
              .param == "encoding_format");
  }

  CHECK(canon_err(chat, R"({"model":"m","stream":"yes"})").param == "stream");
  CHECK(canon_err(chat, R"({"model":"m","stream_options":true})").param == "stream_options");
  CHECK(canon_err(chat, R"({"model":"m","stream_options":{"include_usage":1}})").param == "stream_options");
  CHECK(canon_err(chat, R"({"model":"m","temperature":"0"})").param == "temperature");

  // Nesting deep enough to threaten the stack is refused, not followed.
  const std::string deep = R"({"model":"m","x":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  CHECK(canon_err(chat, deep).message.find("nests deeper") != std::string::npos);
}

TEST_CASE("tenant: HMAC-SHA256 of the API key under the server secret") {
  // RFC 4231, test case 2.
  CHECK(to_hex(tenant_of("Jefe", "what do ya want for nothing?").bytes) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(tenant_of("s", "sk-alice") == tenant_of("s", "sk-alice"));
  CHECK(tenant_of("s", "sk-alice") != tenant_of("s", "sk-bob"));
  CHECK(tenant_of("s", "sk-alice") != tenant_of("t", "sk-alice"));   // the secret matters
  CHECK(tenant_of("", "") != tenant_of("", "k"));                      // empty inputs work
}

TEST_CASE("tenant: different API keys never share a cache key") {
  const auto chat = Endpoint::chat_completions;
  const auto alice = tenant_of("secret", "sk-alice");
  const auto bob = tenant_of("secret", "sk-bob");
  CHECK(key_of(chat, kChat, alice) != key_of(chat, kChat, bob));
  CHECK(key_of(chat, kChat, alice) == key_of(chat, kChat, tenant_of("secret", "sk-alice")));
  CHECK(key_of(chat, kChat, alice) != key_of(chat, kChat, tenant_of("other secret", "sk-alice")));
}

TEST_CASE("canonical: sha256 is the SHA-256 of the canonical text") {
  CHECK(to_hex(sha256_of("abc")) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(to_hex(sha256_of("")) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const auto c = canon_ok(Endpoint::embeddings, std::string(R"({"model":"m","input":"x"})"));
  CHECK(c.sha256 == sha256_of(R"({"input":"x","model":"m"})"));
}

TEST_CASE("key: the endpoint is part of the key") {
  const std::string body = R"({"model":"m","prompt":"p","input":"p","messages":[]})";
  // Embeddings have no sampling defaults, so compare a body that is canonical as is.
  const auto request = canon_ok(Endpoint::embeddings, body);
  const auto chat = cache_key(tenant_a(), Endpoint::chat_completions, request);
  const auto completions = cache_key(tenant_a(), Endpoint::completions, request);
  const auto embeddings = cache_key(tenant_a(), Endpoint::embeddings, request);
  CHECK(chat != completions);
  CHECK(chat != embeddings);
  CHECK(completions != embeddings);
  CHECK(key_of(Endpoint::chat_completions, body) != key_of(Endpoint::completions, body));
}

TEST_CASE("key: the key format is stable (keys are persisted)") {
  // Pinned: if this changes, every existing cache is orphaned. Change it on purpose only.
  const auto request = canon_ok(Endpoint::chat_completions, kChat);
  CHECK(request.text ==
        R"({"frequency_penalty":0,"logprobs":false,"messages":[{"content":"hi","role":"user"}],)"
        R"("model":"gpt-4o-mini","presence_penalty":0,"temperature":1,"top_p":1})");
  CHECK(to_hex(request.sha256) == "7abf676d04c2cc446a9ac951ab3ce67f9e508b793034c471880745f32b69f239");
  CHECK(hex(cache_key(tenant_of("secret", "sk-test"), Endpoint::chat_completions, request)) ==
        "c03c33ec92107ebab6e6bf0e71052c59");
}

TEST_CASE("canonical: upstream_body adds n and streaming, never the excluded fields") {
  const auto chat = Endpoint::chat_completions;
  json request = kChat;
  request["n"] = 3;
  request["stream"] = true;
  request["stream_options"] = {{"include_usage", false}};
  request["user"] = "u";
  request["temperature"] = 0.25;
  request["top_p"] = 1;   // explicit: forwarded as the client sent it
  const auto c = canon_ok(chat, request);

  const json one = upstream_body(c, 1, false);
  for (const char* field : {"n", "stream", "stream_options", "user"}) {
    INFO(field);
    CHECK_FALSE(one.contains(field));
  }
  CHECK(one["temperature"] == 0.25);
  CHECK(one["top_p"] == 1);
  CHECK(one["model"] == "gpt-4o-mini");
  CHECK(one["messages"] == kChat["messages"]);
  // Defaults the client left out are in the key but not sent: some models refuse
  // a parameter even at its default value.
  for (const char* field : {"presence_penalty", "frequency_penalty", "logprobs"}) {
    INFO(field);
    CHECK_FALSE(one.contains(field));
    CHECK(c.body.contains(field));
  }

  const json many = upstream_body(c, 5, true);
  CHECK(many["n"] == 5);
  CHECK(many["stream"] == true);
  CHECK(many["stream_options"] == json{{"include_usage", true}});
  CHECK_FALSE(many.contains("user"));
  // Nothing else changes.
  json stripped = many;
  stripped.erase("n");
  stripped.erase("stream");
  stripped.erase("stream_options");
  CHECK(stripped == one);

  const auto embedding = canon_ok(Endpoint::embeddings, with(kEmbedding, "encoding_format", "base64"));
  CHECK(upstream_body(embedding, 1, false) == kEmbedding);
}

TEST_CASE("key: the target's query is part of the key, and reads back from the text") {
  const auto chat = Endpoint::chat_completions;
  const auto plain = canon_ok(chat, kChat);
  const auto a = with_query(plain, "api-version=2024-10-21");
  const auto b = with_query(plain, "api-version=2025-01-01");
  CHECK(a.text == plain.text + "\n?api-version=2024-10-21");
  CHECK(a.query == "api-version=2024-10-21");
  CHECK(a.sha256 == sha256_of(a.text));
  CHECK(a.body == plain.body);  // what is forwarded does not change
  CHECK(upstream_body(a, 1, false) == upstream_body(plain, 1, false));
  CHECK(cache_key(tenant_a(), chat, a) != cache_key(tenant_a(), chat, plain));
  CHECK(cache_key(tenant_a(), chat, a) != cache_key(tenant_a(), chat, b));
  // No query: the request as it was, so keys made before queries counted stay valid.
  const auto none = with_query(plain, "");
  CHECK(none.text == plain.text);
  CHECK(cache_key(tenant_a(), chat, none) == cache_key(tenant_a(), chat, plain));
  // What export writes reads back to the same request (import re-derives the key).
  auto back = canonicalize_text(chat, a.text);
  REQUIRE(back.ok());
  CHECK(back->text == a.text);
  CHECK(back->query == a.query);
  CHECK(cache_key(tenant_a(), chat, back.value()) == cache_key(tenant_a(), chat, a));
  auto plain_back = canonicalize_text(chat, plain.text);
  REQUIRE(plain_back.ok());
  CHECK(plain_back->text == plain.text);
  CHECK_FALSE(canonicalize_text(chat, plain.text + "\nnot a query").ok());
}
