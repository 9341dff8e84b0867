// export_test.cpp: the namespace export file (cache/export.hpp) through real stores in
// temporary directories: a round trip into another store under another tenant, the
// refusals (checksum, truncation, version, request digest), and a list that already
// holds a prefix.
#include "cache/export.hpp"

#include <doctest/doctest.h>

#include "temp_dir.hpp"
#include <rocksdb/db.h>

#include <filesystem>

#include "cache/canonical.hpp"

namespace {

namespace fs = std::filesystem;
using namespace reprise::cache;
using nlohmann::json;

class ExportDir : public reprise::test::UnitTempDir {
 public:
  ExportDir() : UnitTempDir("export_test") {}
};

std::unique_ptr<Store> Open(const std::string& path) {
  auto store = Store::Open(path);
  REQUIRE_MESSAGE(store.ok(), (store.ok() ? "" : store.error().message()));
  return std::move(*store);
}

CanonicalRequest Canon(Endpoint e, const json& body) {
  auto c = canonicalize(e, body.dump());
  REQUIRE(c.ok());
  return std::move(c.value());
}

Sample MakeSample(const CanonicalRequest& c, const std::string& content, int i) {
  Sample s;
  s.choice = {{"message", {{"role", "assistant"}, {"content", content + " #" + std::to_string(i)}}},
              {"finish_reason", "stop"},
              {"logprobs", nullptr},
              {"weights", {0.1, -2.5e-7, 3.0, 1e300}}};
  s.finish_reason = "stop";
  s.completion_tokens = 5 + i;
  s.prompt_tokens = 11;
  s.system_fingerprint = "fp_x";
  s.model = "gpt-4o-mini-2024";
  s.created = 1700000000 + i;
  s.backend = "openai";
  s.request_sha256 = c.sha256;
  if (i % 2 == 0) {  // the answer's extra fields, on some samples only (older ones have none)
    s.usage_extra = {{"completion_tokens_details", {{"reasoning_tokens", i}}}};
    s.response_extra = {{"service_tier", "default"}};
  }
  return s;
}

std::string Record(Endpoint e, const CanonicalRequest& c) { return std::string(endpoint_name(e)) + "\n" + c.text; }

// A list of `count` samples of c under (tenant), namespace ns reading `read` of them.
CacheKey Fill(Store& store, const TenantId& tenant, Endpoint e, const CanonicalRequest& c, int count, int read,
              const std::string& ns, const std::string& content) {
  const CacheKey key = cache_key(tenant, e, c);
  std::vector<Sample> samples;
  for (int i = 0; i < count; ++i) samples.push_back(MakeSample(c, content, i));
  std::vector<CursorMove> moves;
  if (read > 0) moves.push_back({ns, tenant, key, uint64_t(read)});
  Status st = store.Append(tenant, key, 0, samples, moves, Record(e, c));
  REQUIRE_MESSAGE(st.ok(), st.message());
  return key;
}

std::vector<Sample> ReadAll(Store& store, const TenantId& t, const CacheKey& k) {
  auto n = store.Count(t, k);
  REQUIRE(n.ok());
  auto got = store.Read(t, k, 0, *n);
  REQUIRE(got.ok());
  return std::move(*got);
}

// Re-seals a file whose body was edited: a new, valid checksum line.
std::string Reseal(const std::string& file) {
  const size_t last = file.find_last_of('\n', file.size() - 2) + 1;
  const std::string body = file.substr(0, last);
  return body + json({{"sha256", to_hex(sha256_of(body))}}).dump() + "\n";
}

std::string ExportOk(Store& store, const std::string& ns) {
  auto file = ExportNamespace(store, ns);
  REQUIRE_MESSAGE(file.ok(), (file.ok() ? "" : file.error().message()));
  return std::move(*file);
}

const json kChat = {{"model", "gpt-4o-mini"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"temperature", 0.7}};
const json kEmbed = {{"model", "text-embedding-3-small"}, {"input", "hello"}};

}  // namespace

TEST_CASE("Export: a namespace's consumed samples round-trip into another store under another tenant") {
  ExportDir dir;
  auto a = Open(dir.db("a"));
  const TenantId ta = tenant_of("secret-a", "sk-a");
  const CanonicalRequest chat = Canon(Endpoint::chat_completions, kChat);
  const CanonicalRequest embed = Canon(Endpoint::embeddings, kEmbed);
  const CanonicalRequest other = Canon(Endpoint::completions, {{"model", "m"}, {"prompt", "unread"}});
  const CacheKey kchat = Fill(*a, ta, Endpoint::chat_completions, chat, 5, 3, "paper", "chat");
  Fill(*a, ta, Endpoint::embeddings, embed, 1, 1, "paper", "embed");
  Fill(*a, ta, Endpoint::completions, other, 2, 2, "elsewhere", "other");  // not paper's
  // A list without a request record (an older build's) is skipped.
  const CanonicalRequest old = Canon(Endpoint::chat_completions, {{"model", "m"}, {"messages", json::array()}});
  const CacheKey kold = cache_key(ta, Endpoint::chat_completions, old);
  REQUIRE(a->Append(ta, kold, 0, {MakeSample(old, "old", 0)}, {{"paper", ta, kold, 1}}).ok());
  auto rec = a->Request(ta, kold);
  REQUIRE(rec.ok());
  CHECK(!rec->has_value());
  auto rec2 = a->Request(ta, kchat);
  REQUIRE(rec2.ok());
  CHECK(**rec2 == Record(Endpoint::chat_completions, chat));

  ExportSummary summary;
  auto exported = ExportNamespace(*a, "paper", &summary);
  REQUIRE(exported.ok());
  const std::string file = *exported;
  CHECK(summary.entries == 2);
  CHECK(summary.samples == 4);
  CHECK(summary.skipped == 1);
  // The layout: header, entries sorted by endpoint, checksum.
  std::vector<json> lines;
  for (size_t at = 0; at < file.size();) {
    size_t end = file.find('\n', at);
    lines.push_back(json::parse(file.substr(at, end - at)));
    at = end + 1;
  }
  REQUIRE(lines.size() == 4);
  CHECK(lines[0]["format"] == "reprise.namespace");
  CHECK(lines[0]["version"] == 1);
  CHECK(lines[0]["namespace"] == "paper");
  CHECK(lines[0]["entries"] == 2);
  CHECK(file.starts_with(R"({"format":"reprise.namespace","version":1,"namespace":"paper","exported_at":")"));
  CHECK(lines[1]["endpoint"] == "chat.completions");
  CHECK(lines[1]["request"] == chat.text);
  CHECK(lines[1]["request_sha256"] == to_hex(chat.sha256));
  CHECK(lines[1]["samples"].size() == 3);  // consumed: 0..2, not the 5 stored
  CHECK(lines[1]["samples"][2]["created"] == 1700000002);
  CHECK(lines[2]["endpoint"] == "embeddings");
  CHECK(lines[3]["sha256"] == to_hex(sha256_of(file.substr(0, file.rfind('\n', file.size() - 2) + 1))));
  CHECK(ExportOk(*a, "paper").substr(file.find('\n')) == file.substr(file.find('\n')));  // stable

  auto b = Open(dir.db("b"));
  const TenantId tb = tenant_of("secret-b", "");
  auto report = ImportFile(*b, file, tb);
  REQUIRE_MESSAGE(report.ok(), (report.ok() ? "" : report.error().message()));
  CHECK(report->lists == 2);
  CHECK(report->samples_added == 4);
  CHECK(report->samples_present == 0);
  CHECK(report->refused.empty());
  CHECK(report->grown.size() == 2);

  const CacheKey kb = cache_key(tb, Endpoint::chat_completions, chat);
  auto got = ReadAll(*b, tb, kb);
  auto want = ReadAll(*a, ta, kchat);
  REQUIRE(got.size() == 3);
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].choice == want[i].choice);
    CHECK(got[i].choice.dump() == want[i].choice.dump());
    CHECK(got[i].finish_reason == want[i].finish_reason);
    CHECK(got[i].completion_tokens == want[i].completion_tokens);
    CHECK(got[i].prompt_tokens == want[i].prompt_tokens);
    CHECK(got[i].system_fingerprint == want[i].system_fingerprint);
    CHECK(got[i].model == want[i].model);
    CHECK(got[i].created == want[i].created);
    CHECK(got[i].backend == want[i].backend);
    CHECK(got[i].usage_extra == want[i].usage_extra);
    CHECK(got[i].response_extra == want[i].response_extra);
    CHECK(got[i].request_sha256 == chat.sha256);
  }
  CHECK(ReadAll(*b, tb, cache_key(tb, Endpoint::embeddings, embed)).size() == 1);
  // No cursor moved, and the imported lists carry their request record.
  CHECK(*b->Namespaces() == std::vector<std::string>{});
  CHECK(**b->Request(tb, kb) == Record(Endpoint::chat_completions, chat));

  // Importing again adds nothing: every sample is present.
  auto again = ImportFile(*b, file, tb);
  REQUIRE(again.ok());
  CHECK(again->samples_added == 0);
  CHECK(again->samples_present == 4);
  CHECK(again->samples_differing == 0);
}

TEST_CASE("Export: a tampered, truncated or foreign-version file is refused and nothing is written") {
  ExportDir dir;
  auto a = Open(dir.db("a"));
  const TenantId t = tenant_of("s", "k");
  const CanonicalRequest chat = Canon(Endpoint::chat_completions, kChat);
  Fill(*a, t, Endpoint::chat_completions, chat, 2, 2, "paper", "chat");
  const std::string file = ExportOk(*a, "paper");
  auto b = Open(dir.db("b"));
  const CacheKey kb = cache_key(t, Endpoint::chat_completions, chat);

  auto refused = [&](const std::string& f, const std::string& says) {
    auto r = ImportFile(*b, f, t);
    REQUIRE(!r.ok());
    CHECK(r.error().code() == Status::Code::invalid_argument);
    CHECK_MESSAGE(r.error().message().find(says) != std::string::npos, r.error().message());
    CHECK(*b->Count(t, kb) == 0);
  };
  std::string tampered = file;
  tampered.replace(tampered.find("chat #1"), 7, "chat #9");
  refused(tampered, "bad checksum");
  refused(file.substr(0, file.size() / 2), "truncated");
  refused(file.substr(0, file.rfind('{')), "truncated");  // cut exactly before the checksum line
  refused(file.substr(0, file.size() - 1), "truncated");
  std::string v2 = file;
  v2.replace(v2.find("\"version\":1"), 11, "\"version\":2");
  refused(Reseal(v2), "unknown version 2");
  std::string fewer = file;
  fewer.replace(fewer.find("\"entries\":1"), 11, "\"entries\":2");
  refused(Reseal(fewer), "announces 2 entries");
  // A request whose digest does not match its text, even with a valid checksum.
  std::string digest = file;
  digest.replace(digest.find("\\\"hi\\\""), 6, "\\\"ho\\\"");
  refused(Reseal(digest), "request_sha256 does not match");
  refused("", "empty");
  refused("{\"hello\":1}\n", "not a Reprise namespace export");

  // A request that this build canonicalises differently: that entry is refused, the
  // rest imported.
  std::string noncanon = file;
  const std::string text = chat.text;
  std::string spaced = text;
  spaced.insert(1, " ");
  json entry = json::parse(noncanon.substr(noncanon.find('\n') + 1, noncanon.find('\n', noncanon.find('\n') + 1) - noncanon.find('\n') - 1));
  entry["request"] = spaced;
  entry["request_sha256"] = to_hex(sha256_of(spaced));
  const std::string header = noncanon.substr(0, noncanon.find('\n') + 1);
  auto r = ImportFile(*b, Reseal(header + entry.dump() + "\n{}\n"), t);
  REQUIRE(r.ok());
  CHECK(r->lists == 0);
  REQUIRE(r->refused.size() == 1);
  CHECK(r->refused[0].find("canonical form") != std::string::npos);
}

TEST_CASE("Export: an import keeps the prefix a list already holds and appends the rest") {
  ExportDir dir;
  auto a = Open(dir.db("a"));
  const TenantId t = tenant_of("s", "");
  const CanonicalRequest chat = Canon(Endpoint::chat_completions, kChat);
  Fill(*a, t, Endpoint::chat_completions, chat, 4, 4, "paper", "published");
  const std::string file = ExportOk(*a, "paper");

  auto b = Open(dir.db("b"));
  const TenantId tb = tenant_of("other secret", "sk-replayer");
  const CacheKey kb = cache_key(tb, Endpoint::chat_completions, chat);
  // b already holds two samples of its own (say from the same upstream, other draws).
  REQUIRE(b->Append(tb, kb, 0, {MakeSample(chat, "published", 0), MakeSample(chat, "mine", 1)}, {},
                    Record(Endpoint::chat_completions, chat))
              .ok());
  auto report = ImportFile(*b, file, tb);
  REQUIRE(report.ok());
  CHECK(report->lists == 1);
  CHECK(report->samples_present == 2);
  CHECK(report->samples_differing == 1);
  CHECK(report->samples_added == 2);
  auto got = ReadAll(*b, tb, kb);
  REQUIRE(got.size() == 4);
  CHECK(got[1].choice["message"]["content"] == "mine #1");       // kept: samples are immutable
  CHECK(got[2].choice["message"]["content"] == "published #2");  // appended from the file
  CHECK(got[3].choice["message"]["content"] == "published #3");
}

TEST_CASE("Export: an unknown or invalid namespace, and a store made before request records") {
  ExportDir dir;
  {
    auto a = Open(dir.db("a"));
    CHECK(ExportNamespace(*a, "nobody").error().code() == Status::Code::not_found);
    CHECK(ExportNamespace(*a, "bad/name").error().code() == Status::Code::invalid_argument);
  }
  // A store with only the first four column families (an older build's) opens.
  const std::string old = dir.db("old");
  {
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"samples", {}}, {"cursors", {}}, {"meta", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    rocksdb::DBOptions options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    REQUIRE(rocksdb::DB::Open(options, old, cfs, &handles, &db).ok());
    REQUIRE(db->Put({}, handles[3], "schema", "1").ok());
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    REQUIRE(db->Close().ok());
    delete db;
  }
  auto store = Open(old);
  const TenantId t = tenant_of("s", "");
  const CanonicalRequest chat = Canon(Endpoint::chat_completions, kChat);
  Fill(*store, t, Endpoint::chat_completions, chat, 1, 1, "paper", "x");
  CHECK(ExportNamespace(*store, "paper").ok());
}

TEST_CASE("Export: a list keyed with the target's query (api-version) imports under the same key") {
  ExportDir dir;
  auto a = Open(dir.db("a"));
  const TenantId ta = tenant_of("secret-a", "sk-a");
  const CanonicalRequest plain = Canon(Endpoint::chat_completions, kChat);
  const CanonicalRequest v1 = with_query(plain, "api-version=2024-10-21");
  const CanonicalRequest v2 = with_query(plain, "api-version=2025-01-01");
  Fill(*a, ta, Endpoint::chat_completions, v1, 2, 2, "paper", "v1");
  Fill(*a, ta, Endpoint::chat_completions, v2, 1, 1, "paper", "v2");
  const std::string file = ExportOk(*a, "paper");

  auto b = Open(dir.db("b"));
  const TenantId tb = tenant_of("secret-b", "sk-b");
  auto report = ImportFile(*b, file, tb);
  REQUIRE(report.ok());
  CHECK(report->refused.empty());
  CHECK(report->lists == 2);
  auto got_v1 = ReadAll(*b, tb, cache_key(tb, Endpoint::chat_completions, v1));
  auto got_v2 = ReadAll(*b, tb, cache_key(tb, Endpoint::chat_completions, v2));
  REQUIRE(got_v1.size() == 2);
  REQUIRE(got_v2.size() == 1);
  CHECK(got_v1[1].choice == MakeSample(v1, "v1", 1).choice);
  CHECK(got_v2[0].choice == MakeSample(v2, "v2", 0).choice);
  CHECK(ReadAll(*b, tb, cache_key(tb, Endpoint::chat_completions, plain)).empty());
}
