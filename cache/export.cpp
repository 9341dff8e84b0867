// export.cpp: a namespace's samples to a JSON Lines file and back (format in export.hpp).
#include "cache/export.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>
#include <limits>
#include <optional>
#include <tuple>

#include <nlohmann/json.hpp>

#include "cache/canonical.hpp"

namespace reprise::cache {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

std::string now_iso8601() {
  std::time_t whole = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&whole, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::optional<Endpoint> endpoint_from_name(std::string_view name) { return endpoint_named(name); }

bool hex_equals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

ordered_json sample_json(const Sample& s) {
  ordered_json j;
  j["choice"] = s.choice;
  j["finish_reason"] = s.finish_reason;
  j["completion_tokens"] = s.completion_tokens;
  j["prompt_tokens"] = s.prompt_tokens;
  j["system_fingerprint"] = s.system_fingerprint;
  j["model"] = s.model;
  j["created"] = s.created;
  j["backend"] = s.backend;
  // Optional: exports made before they existed have neither.
  if (!s.usage_extra.is_null()) j["usage_extra"] = s.usage_extra;
  if (!s.response_extra.is_null()) j["response_extra"] = s.response_extra;
  return j;
}

struct Line {
  std::string endpoint;
  std::string request;
  std::string text;
};

StatusOr<std::string> export_lines(Store& store, std::string_view ns, ExportSummary& summary) {
  auto cursors = store.NamespaceCursors(ns);
  if (!cursors.ok()) return cursors.error();
  if (cursors->empty()) return Status::NotFound("namespace " + std::string(ns) + " has read nothing");
  std::vector<Line> lines;
  for (const CursorEntry& c : *cursors) {
    if (c.next == 0) continue;
    auto record = store.Request(c.tenant, c.key);
    if (!record.ok()) return record.error();
    if (!record->has_value()) {
      ++summary.skipped;
      continue;
    }
    const std::string& rec = **record;
    const size_t nl = rec.find('\n');
    if (nl == std::string::npos || !endpoint_from_name(std::string_view(rec).substr(0, nl)))
      return Status::Corruption("malformed request record of key " + to_hex(c.key.bytes));
    Line line{rec.substr(0, nl), rec.substr(nl + 1), {}};
    const Sha256 sha = sha256_of(line.request);
    auto samples = store.Read(c.tenant, c.key, 0, c.next);
    if (!samples.ok()) return samples.error();
    if (samples->size() != c.next)
      return Status::Corruption("list of key " + to_hex(c.key.bytes) + " holds " + std::to_string(samples->size()) +
                                " samples, fewer than the namespace consumed (" + std::to_string(c.next) + ")");
    ordered_json entry;
    entry["endpoint"] = line.endpoint;
    entry["request"] = line.request;
    entry["request_sha256"] = to_hex(sha);
    ordered_json list = ordered_json::array();
    for (const Sample& s : *samples) {
      if (s.request_sha256 != sha)
        return Status::Corruption("a sample of key " + to_hex(c.key.bytes) + " was made for another request");
      list.push_back(sample_json(s));
    }
    entry["samples"] = std::move(list);
    line.text = entry.dump(-1, ' ', false, json::error_handler_t::strict);
    summary.samples += c.next;
    lines.push_back(std::move(line));
  }
  // Stable: by request, then by content (two tenants may hold the same request).
  std::sort(lines.begin(), lines.end(), [](const Line& a, const Line& b) {
    return std::tie(a.endpoint, a.request, a.text) < std::tie(b.endpoint, b.request, b.text);
  });
  summary.entries = lines.size();
  ordered_json header;
  header["format"] = std::string(kExportFormat);
  header["version"] = kExportVersion;
  header["namespace"] = std::string(ns);
  header["exported_at"] = now_iso8601();
  header["entries"] = lines.size();
  std::string out = header.dump() + "\n";
  for (const Line& l : lines) out += l.text + "\n";
  out += json({{"sha256", to_hex(sha256_of(out))}}).dump() + "\n";
  return out;
}

// ---- Import -------------------------------------------------------------------------

struct Prepared {
  Endpoint endpoint;
  std::string record;  // endpoint name '\n' canonical text
  CanonicalRequest canonical;
  std::vector<Sample> samples;
};

Status bad(std::string message) { return Status::InvalidArgument("import refused: " + std::move(message)); }

template <class T>
bool read_uint(const json& j, const char* name, T& out) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_number_unsigned()) return false;
  const uint64_t v = it->get<uint64_t>();
  if (v > std::numeric_limits<T>::max()) return false;
  out = static_cast<T>(v);
  return true;
}

bool read_string(const json& j, const char* name, std::string& out) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return false;
  out = it->get<std::string>();
  return true;
}

// One entry line, checked: its fields, and that request_sha256 is its request's.
Status parse_entry(std::string_view text, size_t number, Prepared& out, std::string& refused) {
  const std::string where = "entry " + std::to_string(number);
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad(where + " is not a JSON object");
  std::string endpoint, request, sha;
  if (!read_string(j, "endpoint", endpoint) || !read_string(j, "request", request) ||
      !read_string(j, "request_sha256", sha))
    return bad(where + " lacks endpoint, request or request_sha256");
  auto kind = endpoint_from_name(endpoint);
  if (!kind) return bad(where + " names an unknown endpoint \"" + endpoint + "\"");
  const Sha256 digest = sha256_of(request);
  if (!hex_equals(sha, to_hex(digest)))
    return bad(where + ": request_sha256 does not match the SHA-256 of its request text");
  auto samples = j.find("samples");
  if (samples == j.end() || !samples->is_array()) return bad(where + " has no samples array");
  out.endpoint = *kind;
  out.samples.clear();
  out.samples.reserve(samples->size());
  for (size_t i = 0; i < samples->size(); ++i) {
    json& s = (*samples)[i];
    Sample sample;
    auto choice = s.is_object() ? s.find("choice") : s.end();
    if (!s.is_object() || choice == s.end() || !read_string(s, "finish_reason", sample.finish_reason) ||
        !read_uint(s, "completion_tokens", sample.completion_tokens) ||
        !read_uint(s, "prompt_tokens", sample.prompt_tokens) ||
        !read_string(s, "system_fingerprint", sample.system_fingerprint) || !read_string(s, "model", sample.model) ||
        !read_string(s, "backend", sample.backend) || !s.contains("created") || !s["created"].is_number_integer())
      return bad(where + ", sample " + std::to_string(i) + " lacks a field or has one of the wrong type");
    sample.created = s["created"].get<int64_t>();
    sample.choice = std::move(*choice);
    for (auto [name, slot] : {std::pair{"usage_extra", &sample.usage_extra}, std::pair{"response_extra", &sample.response_extra}}) {
      auto it = s.find(name);
      if (it == s.end() || it->is_null()) continue;
      if (!it->is_object()) return bad(where + ", sample " + std::to_string(i) + ": " + name + " is not an object");
      *slot = std::move(*it);
    }
    sample.request_sha256 = digest;
    out.samples.push_back(std::move(sample));
  }
  // The key is derived again from the canonical form this build makes of the request:
  // a text that does not come out identical (another build's canonical form) would be
  // stored under a key no client of this build asks for.
  auto canonical = canonicalize_text(*kind, request);
  if (!canonical) {
    refused = where + ": the request does not parse here (" + canonical.error().message + ")";
    return Status::OK();
  }
  if (canonical->text != request) {
    refused = where + ": this build's canonical form of the request differs from the file's";
    return Status::OK();
  }
  out.canonical = std::move(canonical.value());
  out.record = endpoint + "\n" + request;
  return Status::OK();
}

// The file's lines, its header checked and its checksum verified.
Status verify(std::string_view file, std::vector<std::string_view>& entries) {
  if (file.empty()) return bad("the file is empty");
  const size_t header_end = file.find('\n');
  if (header_end == std::string_view::npos) return bad("truncated: the file has no complete line");
  const std::string_view header_text = file.substr(0, header_end);
  json header = json::parse(header_text.begin(), header_text.end(), nullptr, false);
  if (header.is_discarded() || !header.is_object() || header.value("format", json()) != std::string(kExportFormat))
    return bad("not a Reprise namespace export (its first line lacks \"format\":\"reprise.namespace\")");
  auto version = header.find("version");
  if (version == header.end() || !version->is_number_integer())
    return bad("the header has no version");
  if (version->get<int64_t>() != kExportVersion)
    return bad("unknown version " + version->dump() + " (this build reads version " +
               std::to_string(kExportVersion) + ")");
  uint64_t count = 0;
  if (!read_uint(header, "entries", count)) return bad("the header has no entry count");

  if (file.back() != '\n') return bad("truncated: the last line is incomplete (no checksum line)");
  const size_t last_start = file.find_last_of('\n', file.size() - 2) + 1;  // 0 when one line
  const std::string_view last = file.substr(last_start, file.size() - 1 - last_start);
  json sum = last_start == 0 ? json() : json::parse(last.begin(), last.end(), nullptr, false);
  if (sum.is_discarded() || !sum.is_object() || !sum.contains("sha256") || !sum["sha256"].is_string())
    return bad("truncated: the file does not end with its checksum line");
  if (!hex_equals(sum["sha256"].get<std::string>(), to_hex(sha256_of(file.substr(0, last_start)))))
    return bad("bad checksum: the file was changed or damaged after it was exported");

  entries.clear();
  for (size_t at = header_end + 1; at < last_start;) {
    const size_t end = file.find('\n', at);
    entries.push_back(file.substr(at, end - at));
    at = end + 1;
  }
  if (entries.size() != count)
    return bad("the header announces " + std::to_string(count) + " entries but the file holds " +
               std::to_string(entries.size()));
  return Status::OK();
}

StatusOr<ImportReport> import_file(Store& store, std::string_view file, const TenantId& tenant) {
  std::vector<std::string_view> lines;
  if (Status st = verify(file, lines); !st.ok()) return st;
  ImportReport report;
  std::vector<Prepared> prepared;
  prepared.reserve(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    Prepared p;
    std::string refused;
    if (Status st = parse_entry(lines[i], i + 1, p, refused); !st.ok()) return st;
    if (!refused.empty()) {
      report.refused.push_back(std::move(refused));
      continue;
    }
    prepared.push_back(std::move(p));
  }

  for (Prepared& p : prepared) {
    const CacheKey key = cache_key(tenant, p.endpoint, p.canonical);
    auto length = store.Count(tenant, key);
    if (!length.ok()) return length.error();
    const uint64_t have = std::min<uint64_t>(*length, p.samples.size());
    if (have > 0) {
      auto held = store.Read(tenant, key, 0, have);
      if (!held.ok()) return held.error();
      report.samples_present += have;
      for (uint64_t i = 0; i < have && i < held->size(); ++i)
        if ((*held)[i].choice != p.samples[i].choice || (*held)[i].finish_reason != p.samples[i].finish_reason)
          ++report.samples_differing;
    }
    std::vector<Sample> tail;
    for (uint64_t i = *length; i < p.samples.size(); ++i) tail.push_back(std::move(p.samples[i]));
    // An empty tail still writes the request record (a list an older build made).
    Status st = store.Append(tenant, key, *length, tail, {}, p.record);
    if (!st.ok() && st.code() == Status::Code::invalid_argument)
      return Status::InvalidArgument("import stopped after " + std::to_string(report.lists) +
                                     " lists (a list grew meanwhile?): " + st.message());
    if (!st.ok()) return st;
    ++report.lists;
    report.samples_added += tail.size();
    if (!tail.empty()) report.grown.emplace_back(tenant, key);
  }
  return report;
}

}  // namespace

StatusOr<std::string> ExportNamespace(Store& store, std::string_view ns, ExportSummary* summary) {
  if (!Store::ValidNamespace(ns)) return Status::InvalidArgument("invalid namespace");
  ExportSummary local;
  try {
    auto out = export_lines(store, ns, summary ? *summary : local);
    return out;
  } catch (const std::exception& e) {  // json serialisation (invalid UTF-8), allocation
    return Status::Corruption(std::string("export failed: ") + e.what());
  }
}

StatusOr<ImportReport> ImportFile(Store& store, std::string_view file, const TenantId& tenant) {
  try {
    return import_file(store, file, tenant);
  } catch (const std::exception& e) {  // parsing is exception-free; this is allocation or a bug
    return Status::InvalidArgument(std::string("import failed: ") + e.what());
  }
}

}  // namespace reprise::cache
