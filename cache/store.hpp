#pragma once
// The persistent cache (DESIGN.md section 1): per (tenant, key) an append-only list of
// samples, and per (namespace, tenant, key) a cursor into that list. One RocksDB
// directory, four column families:
//
//   samples   tenant(32) | key(16) | index(u64 big-endian)  ->  xxh3(payload)(u64 BE) | CBOR(Sample)
//   cursors   namespace | '\0' | tenant(32) | key(16)       ->  next index (u64 BE)
//   requests  tenant(32) | key(16)                          ->  endpoint name | '\n' | canonical text
//   meta      "schema"                                      ->  "1"
//
// A list's request record says which request it is a list of (what export needs to
// publish it); written with the list's first append. Stores made before the family
// existed open as they are (it is created empty, the schema stays 1): their lists
// simply have no record and are not exportable.
//
// Big-endian indices make a prefix scan return a list in index order; the namespace
// first in a cursor key makes "reset a namespace" one range delete. Every record carries
// its own checksum (on top of RocksDB's block checksums) so a damaged record is reported
// by index instead of being served.
//
// Thread safety: every method may be called from any number of threads at once. Appends
// to the same (tenant, key) are serialised inside (check-then-write); the caller still
// decides which indices an append fills (the Cacher serialises generation per key).
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/keys.hpp"
#include "cache/sample.hpp"
#include "cache/status.hpp"

namespace reprise::cache {

namespace detail {
struct StoreHandles;   // the open DB and its column families (store.cpp)
struct StoreRecovery;  // the write-failure state and the thread that reopens (store.cpp)
}  // namespace detail

struct StoreOptions {
  // Default false: WriteOptions.sync off. The WAL is always on, so a process crash
  // (kill -9) loses nothing that Append/SetCursors acknowledged; an OS crash or power
  // loss may lose the last writes the OS had not flushed yet, but never corrupts the
  // store and never splits an atomic batch (samples with their cursor moves). A cache
  // can regenerate what it lost, so the default buys write throughput. True fsyncs
  // the WAL on every write (milliseconds each on most disks).
  bool sync_writes = false;
  // Default 64 MiB: the LRU block cache shared by all column families (0 = RocksDB's
  // own small default). Hits read from here instead of the disk.
  size_t block_cache_bytes = 64u << 20;
  // After a failed write (a full disk, an I/O error), the store stops writing (each
  // write is refused at once, counted in Health) and, every recovery_interval, once
  // the filesystem has recovery_min_free_bytes free, closes and reopens the database
  // and writes again. Reads go on meanwhile, except for the moment of the reopen.
  std::chrono::milliseconds recovery_interval{1000};
  uint64_t recovery_min_free_bytes = 4u << 20;
};

// What Open did besides opening: set when a damaged store was moved aside.
struct OpenReport {
  bool moved_aside = false;
  std::string moved_to;  // "<path>.corrupt-<unix time>[-n]"
  std::string reason;    // RocksDB's (or our) description of the damage
};

// A cursor position to persist: namespace ns now starts at `next` for (tenant, key).
struct CursorMove {
  std::string ns;
  TenantId tenant;
  CacheKey key;
  uint64_t next = 0;
};

// One persisted cursor of a namespace (Store::NamespaceCursors).
struct CursorEntry {
  TenantId tenant;
  CacheKey key;
  uint64_t next = 0;
};

class Store {
 public:
  static constexpr uint32_t kSchemaVersion = 1;
  static constexpr size_t kMaxNamespaceLength = 128;

  // Opens (creating the directory and its parents if missing) the store at `path`.
  // A damaged store (RocksDB reports corruption or a missing file, the schema record is
  // unreadable, or the directory holds foreign files and no RocksDB) is renamed to
  // "<path>.corrupt-<unix time>" and an empty store is started in its place, so the
  // proxy keeps serving; `report` says so. A store written with another schema version
  // is refused (Corruption, nothing moved): it is valid data for another build. Other
  // failures (permissions, a lock held by another process) are returned as they are.
  static StatusOr<std::unique_ptr<Store>> Open(const std::string& path,
                                               OpenReport* report = nullptr);
  static StatusOr<std::unique_ptr<Store>> Open(const std::string& path,
                                               const StoreOptions& options,
                                               OpenReport* report = nullptr);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Appends samples at first_index, first_index+1, ... of (tenant, key), and applies
  // `moves`, in one atomic write. Refused with InvalidArgument, writing nothing, when
  // first_index is not the current length (an overwrite or a gap), when a move names an
  // invalid namespace, or when a move would leave a cursor past the end of its list
  // (counting this append). An empty `samples` with moves is a checked SetCursors.
  // A non-empty `request_record` ("<endpoint name>\n<canonical text>") is stored as the
  // list's request record in the same write (the Cacher passes it with index 0; an
  // import passes it whenever it appends, which also labels a list an older build made).
  Status Append(const TenantId& tenant, const CacheKey& key, uint64_t first_index,
                const std::vector<Sample>& samples, const std::vector<CursorMove>& moves,
                std::string_view request_record = {});

  // The list's request record ("<endpoint name>\n<canonical text>"); empty optional
  // when it has none (a list made before records were kept, or no list at all).
  StatusOr<std::optional<std::string>> Request(const TenantId& tenant, const CacheKey& key);

  // The samples with indices in [from, from + count), in order; fewer (or none) when the
  // list is shorter. Each record's checksum and encoding is verified: a damaged record,
  // or one missing inside the list, is Corruption naming its index.
  StatusOr<std::vector<Sample>> Read(const TenantId& tenant, const CacheKey& key,
                                     uint64_t from, uint64_t count);

  // ---- A local copy of samples kept elsewhere (the cluster store's) ----
  // A sample record as the store writes it: xxh3(payload) (u64 BE) | CBOR(Sample). The
  // cluster store keeps the same records, so a copy is checked the same way.
  static StatusOr<std::string> EncodeRecord(const Sample& sample);
  static StatusOr<Sample> DecodeRecord(std::string_view record, uint64_t index);
  // Writes records at their indices as they are, in one write: no length check, since
  // a replica copies whichever samples it happened to read (its lists have gaps, and
  // Count/Read/export mean nothing for them). Only for a store used as such a copy.
  Status PutCopies(const TenantId& tenant, const CacheKey& key,
                   const std::vector<std::pair<uint64_t, std::string>>& records);
  // The sample at `index`, checked; empty optional when absent.
  StatusOr<std::optional<Sample>> ReadAt(const TenantId& tenant, const CacheKey& key, uint64_t index);

  // The length of the list (0 when the key has none). One seek, no scan.
  StatusOr<uint64_t> Count(const TenantId& tenant, const CacheKey& key);

  // The next index namespace ns serves for (tenant, key); 0 when never moved or reset.
  StatusOr<uint64_t> Cursor(std::string_view ns, const TenantId& tenant, const CacheKey& key);

  // Persists the moves in one atomic write. Cursors may move back (a per-key replay)
  // but never past the end of their list: such a batch is refused whole.
  Status SetCursors(const std::vector<CursorMove>& moves);

  // Moves one cursor forward to move.next, or leaves it where it is if it already
  // stands further (a max-merge: concurrent advances may land in any order). The
  // caller vouches for the list's length (the Cacher knows it: it serialises the
  // appends of each key), which saves the lookup that SetCursors makes.
  Status AdvanceCursor(const CursorMove& move, uint64_t list_length);

  // Sets every cursor of namespace ns (all tenants, all keys) back to 0: one range
  // delete. The samples stay: a reset namespace replays the same samples.
  Status ResetNamespace(std::string_view ns);

  // The namespaces that have at least one cursor, sorted.
  StatusOr<std::vector<std::string>> Namespaces();

  // 1..128 characters of [A-Za-z0-9._:-].
  static bool ValidNamespace(std::string_view ns);

  // The server secret that tenants are derived from (HMAC-SHA256(secret, API key)):
  // 32 random bytes made on first use and kept in the meta family, so that tenants
  // stay the same across restarts and die with the cache they protect. Synced write.
  StatusOr<std::string> ServerSecret();

  // Small named records beside the cache (the stats counters, say). Names other than
  // the store's own ("schema", "server_secret"). Get: empty optional when absent.
  Status PutMeta(std::string_view name, std::string_view value);
  StatusOr<std::optional<std::string>> GetMeta(std::string_view name);

  // What namespace ns has read: how many keys it has a cursor for, and the sum of
  // those cursors (the samples it consumed). One prefix scan of its cursors.
  struct NamespaceSummary {
    uint64_t keys = 0;
    uint64_t samples_consumed = 0;
  };
  StatusOr<NamespaceSummary> SummarizeNamespace(std::string_view ns);

  // Every persisted cursor of namespace ns (all tenants), in key order. One prefix scan.
  StatusOr<std::vector<CursorEntry>> NamespaceCursors(std::string_view ns);

  // Bytes of the store's files on disk (SST files, WAL, manifests).
  uint64_t SizeOnDisk() const;

  // Failed writes so far (each one a write refused or failed: samples not stored,
  // cursors not moved), recoveries (the database reopened after a failure), and
  // whether writes are accepted now.
  struct Health {
    uint64_t write_errors = 0;
    uint64_t recoveries = 0;
    bool writable = true;
  };
  Health GetHealth() const;

 private:
  static constexpr size_t kStripes = 64;  // append locks, striped by (tenant, key)
  static constexpr uint64_t kPointReadMax = 16;  // Read uses point lookups up to this count

  StatusOr<std::vector<Sample>> ReadByPoints(const TenantId& tenant, const CacheKey& key, uint64_t from,
                                             uint64_t end);
  StatusOr<bool> HasIndex(const TenantId& tenant, const CacheKey& key, uint64_t index);

  Store(std::unique_ptr<detail::StoreHandles> handles, std::string dir, const StoreOptions& options,
        std::shared_ptr<detail::StoreRecovery> recovery);
  // The open database, or null while it is being reopened after a failure.
  std::shared_ptr<detail::StoreHandles> CurrentHandles() const { return h_.load(); }
  // Refuses a write while the store is failed (counted); OK otherwise.
  Status Writable();
  // The outcome of a RocksDB write; a failure stops writes until a reopen.
  Status Written(const Status& status);
  void RecoveryLoop();
  bool Reopen();
  Status CheckMoves(const std::vector<CursorMove>& moves, const TenantId* appended_tenant,
                    const CacheKey* appended_key, uint64_t appended_count);
  std::mutex& StripeFor(const TenantId& tenant, const CacheKey& key);

  std::atomic<std::shared_ptr<detail::StoreHandles>> h_;
  const std::string dir_;
  const StoreOptions options_;
  std::shared_ptr<detail::StoreRecovery> recovery_;  // shared with RocksDB's listener
  std::array<std::mutex, kStripes> stripes_;
};

}  // namespace reprise::cache
