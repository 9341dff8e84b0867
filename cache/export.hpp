#pragma once
// Export and import of a namespace's cache: the samples an experiment consumed, in a
// file that can be published beside a paper and replayed exactly by anyone (import it,
// then run the experiment with X-Reprise-Cache: only-cached). Pure: no sockets.
//
// The file is JSON Lines, UTF-8, one object per line, each line ending in '\n':
//
//   {"format":"reprise.namespace","version":1,"namespace":NS,"exported_at":ISO8601,"entries":N}
//   {"endpoint":"chat.completions","request":"<canonical text>","request_sha256":"<hex>",
//    "samples":[{"choice":...,"finish_reason":...,"completion_tokens":...,"prompt_tokens":...,
//                "system_fingerprint":...,"model":...,"created":...,"backend":...}, ...]}
//   ... N entry lines in all ...
//   {"sha256":"<hex SHA-256 of every byte before this line>"}
//
// An entry is one list: the canonical request (the exact text that is hashed into the
// key, its query line included (canonical.hpp with_query), so the importer re-derives
// the key under its own tenant) and the samples the
// namespace consumed from it, indices 0..cursor-1 in order. No tenant, key or secret is
// in the file. Entries are sorted by (endpoint, request), so one cache exports one file.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cache/keys.hpp"
#include "cache/status.hpp"
#include "cache/store.hpp"

namespace reprise::cache {

inline constexpr std::string_view kExportFormat = "reprise.namespace";
inline constexpr int kExportVersion = 1;

struct ExportSummary {
  uint64_t entries = 0;
  uint64_t samples = 0;
  uint64_t skipped = 0;  // lists without a request record (made by an older build)
};

// The file for namespace ns: every tenant's lists that ns has a cursor past 0 for.
// NotFound when ns has no cursor at all; InvalidArgument for an invalid name.
StatusOr<std::string> ExportNamespace(Store& store, std::string_view ns, ExportSummary* summary = nullptr);

struct ImportReport {
  uint64_t lists = 0;            // entries imported
  uint64_t samples_added = 0;    // appended after what the lists held
  uint64_t samples_present = 0;  // the list already held that index: kept as it was
  uint64_t samples_differing = 0;  // of those, how many differ from the file's
  std::vector<std::string> refused;  // entries skipped, and why (e.g. canonical form differs)
  // The lists that grew, so that a running Cacher re-reads their length (Cacher::refresh).
  std::vector<std::pair<TenantId, CacheKey>> grown;
};

// Verifies the whole file first (format, version, checksum, entry count, every entry's
// fields and SHA-256), refusing it with InvalidArgument naming the problem and writing
// nothing; then, per entry, re-derives the key under `tenant` from the canonical
// request (re-canonicalised: a text that does not come out identical refuses that
// entry, listed in `refused`) and appends the samples beyond the list's length. Lists
// only grow: a prefix already held is kept. No cursor moves.
StatusOr<ImportReport> ImportFile(Store& store, std::string_view file, const TenantId& tenant);

}  // namespace reprise::cache
