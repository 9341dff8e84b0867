// End to end: publishing an experiment's cache. One proxy serves namespace "paper";
// `reprise export` writes its file; a second proxy with a fresh cache and no reachable
// upstream imports it with `reprise import`, and replays the experiment with
// X-Reprise-Cache: only-cached, exactly.
#include <doctest/doctest.h>

#include <algorithm>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;

namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

// What must come back identical: everything but the response's id and creation time.
json contents_of(const Response& r) {
  json body = r.json();
  return {{"choices", body["choices"]}, {"usage", body["usage"]}, {"model", body["model"]},
          {"system_fingerprint", body.value("system_fingerprint", json())}};
}

json embedding_contents(const Response& r) {
  json body = r.json();
  return {{"data", body["data"]}, {"usage", body["usage"]}, {"model", body["model"]}};
}

// Per choice index: the streamed content joined, and the finish_reason.
std::vector<std::string> streamed(const Response& r) {
  std::vector<std::string> out;
  bool done = false;
  for (auto& event : sse_events(r.body, &done))
    for (auto& choice : event["choices"]) {
      size_t i = choice["index"].get<size_t>();
      if (out.size() <= i) out.resize(i + 1);
      if (choice["delta"].contains("content") && choice["delta"]["content"].is_string())
        out[i] += choice["delta"]["content"].get<std::string>();
      if (choice.contains("finish_reason") && choice["finish_reason"].is_string())
        out[i].append("|").append(choice["finish_reason"].get<std::string>());
    }
  CHECK(done);
  return out;
}

struct Experiment {
  Response chat_a, chat_a_more, stream, embed;
};

Experiment run_experiment(uint16_t port, const std::string& ns, const Headers& extra = {}) {
  Headers h = extra;
  h.emplace_back("X-Reprise-Namespace", ns);
  Experiment e;
  e.chat_a = post_json(port, "/v1/chat/completions", chat_body("Paper prompt A", 2), h);
  e.chat_a_more = post_json(port, "/v1/chat/completions", chat_body("Paper prompt A", 1), h);
  e.stream = post_json(port, "/v1/chat/completions", chat_body("Paper stream", 2, true), h);
  e.embed = post_json(port, "/v1/embeddings", {{"model", "text-embedding-3-small"}, {"input", {"one", "two"}}}, h);
  return e;
}

}  // namespace

TEST_CASE("export: a namespace exported by one proxy replays exactly, offline, on another") {
  Stack one;
  Experiment original = run_experiment(one.proxy.port(), "paper");
  REQUIRE(original.chat_a.status == 200);
  REQUIRE(original.chat_a_more.status == 200);
  REQUIRE(original.stream.status == 200);
  REQUIRE(original.embed.status == 200);
  CHECK(original.chat_a.header("X-Reprise-Cache") == "miss");
  CHECK(original.chat_a_more.header("X-Reprise-Samples") == "2-2");
  // Another namespace's reads are not part of paper's file.
  post_json(one.proxy.port(), "/v1/chat/completions", chat_body("Not in the paper", 1), {{"X-Reprise-Namespace", "other"}});

  const std::string admin1 = "127.0.0.1:" + std::to_string(one.proxy.admin_port());
  const std::string file = (one.dir / "paper.jsonl").string();
  Process exporter({REPRISE_BIN, "export", "--namespace", "paper", "--out", file, "--admin", admin1}, one.dir.path(),
                   "cli-export");
  REQUIRE_MESSAGE(exporter.wait_exit(std::chrono::seconds(20)) == 0, exporter.err());
  CHECK(exporter.out().find("3 lists") != std::string::npos);
  const std::string text = read_file(file);
  CHECK(text.starts_with(R"({"format":"reprise.namespace","version":1,"namespace":"paper",)"));
  CHECK(text.find("Not in the paper") == std::string::npos);
  CHECK(std::count(text.begin(), text.end(), '\n') == 5);  // header, 3 lists, checksum

  // The admin route itself: the file's media type; an unknown namespace is a 404.
  auto direct = request(one.proxy.admin_port(), "GET", "/admin/namespaces/paper/export");
  CHECK(direct.status == 200);
  CHECK(direct.header("Content-Type") == "application/x-ndjson");
  CHECK(request(one.proxy.admin_port(), "GET", "/admin/namespaces/nobody/export").status == 404);

  // Proxy two: a fresh cache, and an upstream that refuses every connection.
  TempDir dir2;
  ProxyConfig offline;
  offline.upstream = "max_retries = 0\n";
  ProxyUnderTest two(dir2, offline.render(dir2, "http://127.0.0.1:1/v1"), {}, "replayer");
  CHECK(post_json(two.port(), "/v1/chat/completions", chat_body("Paper prompt A", 1), {{"X-Reprise-Namespace", "probe"},
                                                                                      {"X-Reprise-Cache", "only-cached"}})
            .status == 504);  // not there yet (and the key is now loaded in the Cacher)
  const std::string admin2 = "127.0.0.1:" + std::to_string(two.admin_port());
  Process importer({REPRISE_BIN, "import", file, "--admin", admin2}, dir2.path(), "cli-import");
  REQUIRE_MESSAGE(importer.wait_exit(std::chrono::seconds(20)) == 0, importer.err());
  CHECK(importer.out().find("3 lists, 6 samples added, 0 already present") != std::string::npos);

  const Headers offline_only{{"X-Reprise-Cache", "only-cached"}};
  Experiment replay = run_experiment(two.port(), "replication", offline_only);
  REQUIRE(replay.chat_a.status == 200);
  REQUIRE(replay.chat_a_more.status == 200);
  REQUIRE(replay.stream.status == 200);
  REQUIRE(replay.embed.status == 200);
  CHECK(replay.chat_a.header("X-Reprise-Cache") == "hit");
  CHECK(contents_of(replay.chat_a) == contents_of(original.chat_a));
  CHECK(contents_of(replay.chat_a_more) == contents_of(original.chat_a_more));
  CHECK(streamed(replay.stream) == streamed(original.stream));
  CHECK(embedding_contents(replay.embed) == embedding_contents(original.embed));

  // Beyond what the paper consumed: not in the file, and no upstream to ask.
  auto beyond = post_json(two.port(), "/v1/chat/completions", chat_body("Paper prompt A", 1),
                          {{"X-Reprise-Namespace", "replication"}, {"X-Reprise-Cache", "only-cached"}});
  CHECK(beyond.status == 504);
  CHECK(beyond.json()["error"]["code"] == "not_cached");

  // Clients with an API key are another tenant: they need the file imported for their key.
  const Headers keyed{{"X-Reprise-Cache", "only-cached"}, {"Authorization", "Bearer sk-reader-1"}};
  CHECK(run_experiment(two.port(), "keyed", keyed).chat_a.status == 504);
  Process keyed_import({REPRISE_BIN, "import", file, "--import-key", "sk-reader-1", "--admin", admin2, "--json"},
                       dir2.path(), "cli-import-key");
  REQUIRE_MESSAGE(keyed_import.wait_exit(std::chrono::seconds(20)) == 0, keyed_import.err());
  CHECK(json::parse(keyed_import.out())["samples_added"] == 6);
  Experiment keyed_replay = run_experiment(two.port(), "keyed-2", keyed);
  REQUIRE(keyed_replay.chat_a.status == 200);
  CHECK(contents_of(keyed_replay.chat_a) == contents_of(original.chat_a));

  // A damaged file is refused, naming the problem; the CLI says so and fails.
  write_file(dir2 / "bad.jsonl", text.substr(0, text.size() / 2));
  Process bad({REPRISE_BIN, "import", (dir2 / "bad.jsonl").string(), "--admin", admin2}, dir2.path(), "cli-bad");
  CHECK(bad.wait_exit(std::chrono::seconds(20)) == 1);
  CHECK(bad.err().find("truncated") != std::string::npos);
}

namespace {

// A proxy whose upstreams speak the three other dialects, all at `base` (the fake, or
// nowhere): kind openai (Responses), anthropic (claude*), gemini (gemini*).
std::string dialects_config(const TempDir& dir, const std::string& host) {
  return "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\npath = \"" +
         (dir / "cache").string() +
         "\"\n[[upstreams]]\nname = \"openai\"\nmax_retries = 0\nbase_url = \"http://" + host + "/v1\"\n"
         "[[upstreams]]\nname = \"anthropic\"\nkind = \"anthropic\"\nmax_retries = 0\nbase_url = \"http://" + host + "/v1\"\n"
         "[[upstreams]]\nname = \"gemini\"\nkind = \"gemini\"\nmax_retries = 0\nbase_url = \"http://" + host + "/v1beta\"\n"
         "[[models]]\nmatch = \"claude*\"\nbackend = \"anthropic\"\n"
         "[[models]]\nmatch = \"gemini*\"\nbackend = \"gemini\"\n"
         "[[models]]\nmatch = \"*\"\nbackend = \"openai\"\n";
}

struct AgentRun {
  Response responses, messages, gemini;
};

AgentRun run_agents(uint16_t port, const std::string& ns, const Headers& extra = {}) {
  Headers h = extra;
  h.emplace_back("X-Reprise-Namespace", ns);
  Headers anthropic = h;
  anthropic.emplace_back("anthropic-version", "2023-06-01");
  AgentRun run;
  run.responses = post_json(port, "/v1/responses", {{"model", "gpt-4.1-mini"}, {"input", "Plan the trip"}}, h);
  run.messages = post_json(port, "/v1/messages",
                           {{"model", "claude-sonnet-4-5"}, {"max_tokens", 64},
                            {"messages", {{{"role", "user"}, {"content", "Plan the trip"}}}}},
                           anthropic);
  run.gemini = post_json(port, "/v1beta/models/gemini-2.5-flash:generateContent",
                         {{"contents", {{{"role", "user"}, {"parts", {{{"text", "Plan the trip"}}}}}}},
                          {"generationConfig", {{"candidateCount", 2}}}},
                         h);
  return run;
}

}  // namespace

TEST_CASE("export: Responses, Anthropic and Gemini samples exported by one proxy replay exactly offline on another") {
  TempDir dir;
  FakeUpstream fake(dir);
  ProxyUnderTest one(dir, dialects_config(dir, "127.0.0.1:" + std::to_string(fake.port())));
  AgentRun original = run_agents(one.port(), "agents");
  REQUIRE_MESSAGE(original.responses.status == 200, original.responses.body);
  REQUIRE_MESSAGE(original.messages.status == 200, original.messages.body);
  REQUIRE_MESSAGE(original.gemini.status == 200, original.gemini.body);
  CHECK(fake.stats()["calls"] == 3);

  const std::string file = (dir / "agents.jsonl").string();
  Process exporter({REPRISE_BIN, "export", "--namespace", "agents", "--out", file, "--admin",
                    "127.0.0.1:" + std::to_string(one.admin_port())},
                   dir.path(), "cli-export");
  REQUIRE_MESSAGE(exporter.wait_exit(std::chrono::seconds(20)) == 0, exporter.err());
  CHECK(exporter.out().find("3 lists") != std::string::npos);

  TempDir dir2;
  ProxyUnderTest two(dir2, dialects_config(dir2, "127.0.0.1:1"), {}, "replayer");
  Process importer({REPRISE_BIN, "import", file, "--admin", "127.0.0.1:" + std::to_string(two.admin_port())},
                   dir2.path(), "cli-import");
  REQUIRE_MESSAGE(importer.wait_exit(std::chrono::seconds(20)) == 0, importer.err());
  CHECK(importer.out().find("3 lists, 4 samples added") != std::string::npos);

  AgentRun replay = run_agents(two.port(), "replication", {{"X-Reprise-Cache", "only-cached"}});
  REQUIRE_MESSAGE(replay.responses.status == 200, replay.responses.body);
  REQUIRE_MESSAGE(replay.messages.status == 200, replay.messages.body);
  REQUIRE_MESSAGE(replay.gemini.status == 200, replay.gemini.body);
  // The stored answers themselves, ids included.
  CHECK(replay.responses.json() == original.responses.json());
  CHECK(replay.messages.json() == original.messages.json());
  CHECK(replay.gemini.json() == original.gemini.json());
  CHECK(fake.stats()["calls"] == 3);
}
