// The pure HTTP rules: framing, header filtering, Retry-After, the error mapping and
// log redaction.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "proxy/error.hpp"
#include "proxy/framing.hpp"
#include "proxy/log.hpp"
#include "proxy/api_handler.hpp"
#include "proxy/upstream_client.hpp"

using namespace reprise;

namespace {
http::request_header<> header_with(std::vector<std::pair<std::string, std::string>> fields) {
  http::request_header<> h;
  for (auto& [k, v] : fields) h.insert(k, v);
  return h;
}
}  // namespace

TEST_CASE("request framing: only unambiguous framing passes") {
  CHECK_FALSE(check_request_framing(header_with({{"Content-Length", "5"}})));
  CHECK_FALSE(check_request_framing(header_with({{"Transfer-Encoding", "chunked"}})));
  CHECK_FALSE(check_request_framing(header_with({{"Transfer-Encoding", " Chunked "}})));
  CHECK(check_request_framing(header_with({{"Transfer-Encoding", "gzip"}})));
  CHECK(check_request_framing(header_with({{"Transfer-Encoding", "gzip, chunked"}})));
  CHECK(check_request_framing(header_with({{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}})));
  CHECK(check_request_framing(header_with({{"Transfer-Encoding", "chunked"}, {"Content-Length", "3"}})));
  CHECK(check_request_framing(header_with({{"Content-Length", "3"}, {"Content-Length", "3"}})));
}

TEST_CASE("request framing: a folded header line (obs-fold) is refused") {
  CHECK_FALSE(check_obs_fold("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"));
  // A body that starts with a space is not a fold: only the header is looked at.
  CHECK_FALSE(check_obs_fold("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n {}\r\n x"));
  CHECK(check_obs_fold("POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"));
  CHECK(check_obs_fold("POST / HTTP/1.1\r\nX-A: 1\r\n\t2\r\n\r\n"));
  CHECK(check_obs_fold("POST / HTTP/1.1\r\nX-A: 1\r\n 2"));  // a partial header too
  CHECK(header_end("a\r\n\r\nb") == 5);
  CHECK(header_end("a\r\n") == std::string_view::npos);
}

TEST_CASE("Retry-After: seconds, HTTP date, retry-after-ms") {
  auto now = std::chrono::system_clock::from_time_t(1'700'000'000);
  http::fields f;
  CHECK_FALSE(parse_retry_after(f, now));
  f.set(http::field::retry_after, "3");
  CHECK(*parse_retry_after(f, now) == Millis(3000));
  f.set("retry-after-ms", "250");
  CHECK(*parse_retry_after(f, now) == Millis(250));  // the precise one wins
  http::fields date;
  date.set(http::field::retry_after, "Tue, 14 Nov 2023 22:13:25 GMT");  // now + 5 s
  CHECK(*parse_retry_after(date, now) == Millis(5000));
  http::fields junk;
  junk.set(http::field::retry_after, "soon");
  CHECK_FALSE(parse_retry_after(junk, now));
}

TEST_CASE("upstream request headers: hop-by-hop and ours dropped, key fallback") {
  UpstreamConfig up;
  up.api_key = "sk-configured";
  http::fields client;
  client.insert("Host", "proxy:8080");
  client.insert("Connection", "keep-alive, X-Private");
  client.insert("X-Private", "1");
  client.insert("Keep-Alive", "timeout=5");
  client.insert("Transfer-Encoding", "chunked");
  client.insert("Content-Length", "10");
  client.insert("Accept-Encoding", "gzip");
  client.insert("X-Reprise-Namespace", "ns");
  client.insert("X-Stainless-Lang", "js");
  client.insert("OpenAI-Organization", "org");
  auto out = upstream_headers(client, up);
  CHECK(out.find("Host") == out.end());
  CHECK(out.find("Connection") == out.end());
  CHECK(out.find("X-Private") == out.end());
  CHECK(out.find("Keep-Alive") == out.end());
  CHECK(out.find("Transfer-Encoding") == out.end());
  CHECK(out.find("Content-Length") == out.end());
  CHECK(out.find("X-Reprise-Namespace") == out.end());
  CHECK(out["Accept-Encoding"] == "identity");
  CHECK(out["X-Stainless-Lang"] == "js");
  CHECK(out["OpenAI-Organization"] == "org");
  CHECK(out["Authorization"] == "Bearer sk-configured");

  client.insert("Authorization", "Bearer sk-client");
  CHECK(upstream_headers(client, up)["Authorization"] == "Bearer sk-client");
  UpstreamConfig keyless;
  http::fields bare;
  auto without_key = upstream_headers(bare, keyless);
  CHECK(without_key.find("Authorization") == without_key.end());
}

TEST_CASE("credentials: every one the client sends names the tenant, and none gets the configured key") {
  auto input = [](std::vector<std::pair<std::string, std::string>> headers, std::string_view query = {}) {
    http::fields f;
    for (auto& [k, v] : headers) f.insert(k, v);
    return tenant_secret_input(client_credentials(f, query));
  };
  // None: the shared no-key tenant. Authorization alone: its token, as before.
  CHECK(input({}).empty());
  CHECK(input({{"Authorization", "Bearer sk-a"}}) == "sk-a");
  CHECK(input({{"Authorization", "Basic dXNlcg=="}}) == "Basic dXNlcg==");
  // Any other credential names its own tenant, never the no-key one.
  const std::string x = input({{"x-api-key", "k1"}});
  const std::string azure = input({{"api-key", "k1"}});
  const std::string goog = input({{"x-goog-api-key", "k1"}});
  const std::string query = input({}, "alt=sse&key=k1");
  for (auto& one : {x, azure, goog, query}) {
    CHECK_FALSE(one.empty());
    CHECK(one != "k1");
  }
  CHECK(x != azure);
  CHECK(azure != goog);
  CHECK(goog != query);
  CHECK(input({{"X-Api-Key", "k1"}}) == x);  // header names are case-insensitive
  CHECK(input({{"x-api-key", "k2"}}) != x);
  // Several at once: changing, adding or dropping any of them changes the tenant.
  const std::string both = input({{"Authorization", "Bearer sk-a"}, {"x-api-key", "k1"}});
  CHECK(both != input({{"Authorization", "Bearer sk-a"}}));
  CHECK(both != x);
  CHECK(both != input({{"Authorization", "Bearer sk-b"}, {"x-api-key", "k1"}}));
  CHECK(both != input({{"Authorization", "Bearer sk-a"}, {"x-api-key", "k2"}}));
  CHECK(both == input({{"x-api-key", "k1"}, {"Authorization", "Bearer sk-a"}}));  // the order sent does not matter
  CHECK(input({{"x-api-key", "k1"}, {"x-api-key", "k2"}}) != x);
  // The framing keeps name and value apart.
  CHECK(input({{"x-api-key", "ab"}}) != input({{"api-key", "ab"}}));

  UpstreamConfig up;
  up.api_key = "sk-configured";
  for (const char* name : {"x-api-key", "api-key", "x-goog-api-key"}) {
    http::fields client;
    client.insert(name, "client-key");
    auto out = upstream_headers(client, up);
    CHECK(out[name] == "client-key");
    CHECK(out.find(http::field::authorization) == out.end());
  }
  http::fields bare;
  auto with_query_key = upstream_headers(bare, up, "key=client-key");
  CHECK(with_query_key.find(http::field::authorization) == with_query_key.end());
  CHECK(upstream_headers(bare, up, "api-version=1")["Authorization"] == "Bearer sk-configured");
}

TEST_CASE("relayed response headers drop framing and hop-by-hop fields") {
  http::fields up;
  up.insert("Content-Type", "application/json");
  up.insert("Content-Length", "9");
  up.insert("Transfer-Encoding", "chunked");
  up.insert("Connection", "close");
  up.insert("x-request-id", "req_1");
  up.insert("Server", "cloudflare");
  auto out = relay_headers(up);
  CHECK(out["Content-Type"] == "application/json");
  CHECK(out["x-request-id"] == "req_1");
  CHECK(out.find("Content-Length") == out.end());
  CHECK(out.find("Transfer-Encoding") == out.end());
  CHECK(out.find("Connection") == out.end());
  CHECK(out.find("Server") == out.end());
}

TEST_CASE("one mapping from errors to status and OpenAI JSON") {
  CHECK(to_http_status({ErrorKind::invalid_json, "", {}}) == 400);
  CHECK(to_http_status({ErrorKind::not_found, "", {}}) == 404);
  CHECK(to_http_status({ErrorKind::method_not_allowed, "", {}}) == 405);
  CHECK(to_http_status({ErrorKind::payload_too_large, "", {}}) == 413);
  CHECK(to_http_status({ErrorKind::header_too_large, "", {}}) == 431);
  CHECK(to_http_status({ErrorKind::upstream_unreachable, "", {}}) == 502);
  CHECK(to_http_status({ErrorKind::upstream_bad_response, "", {}}) == 502);
  CHECK(to_http_status({ErrorKind::upstream_timeout, "", {}}) == 504);
  CHECK(to_http_status({ErrorKind::backend_unavailable, "", {}}) == 503);
  CHECK(to_http_status({ErrorKind::not_cached, "", {}}) == 504);
  CHECK(to_http_status({ErrorKind::upstream_status, "", {}, 429}) == 429);
  CHECK(to_http_status({ErrorKind::upstream_status, "", {}, 200}) == 502);
  auto j = nlohmann::json::parse(to_openai_json({ErrorKind::bad_request, "bad \xff byte", "model"}));
  CHECK(j["error"]["message"].get<std::string>().starts_with("bad "));
  CHECK(j["error"]["type"] == "invalid_request_error");
  CHECK(j["error"]["param"] == "model");
  CHECK(j["error"]["code"] == "bad_request");
  auto k = nlohmann::json::parse(to_openai_json({ErrorKind::upstream_timeout, "slow", {}}));
  CHECK(k["error"]["param"].is_null());
}

TEST_CASE("log lines never carry credentials") {
  CHECK(log::redact_secrets("Authorization: Bearer sk-abc123_-XYZ rest") == "Authorization: Bearer [redacted] rest");
  CHECK(log::redact_secrets("key sk-proj-ABCdef0123456789 used") == "key [redacted] used");
  CHECK(log::redact_secrets("bearer opaque.token+/= end") == "bearer [redacted] end");
  CHECK(log::redact_secrets("task-sk-1 is fine") == "task-sk-1 is fine");
  CHECK(log::redact_secrets("nothing here") == "nothing here");
}
