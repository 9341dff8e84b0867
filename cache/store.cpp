// store.cpp: the RocksDB-backed list store (layout and guarantees in store.hpp).
#include "cache/store.hpp"

#include <openssl/rand.h>
#include <sys/statvfs.h>

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <thread>
#include <filesystem>
#include <limits>
#include <system_error>

namespace reprise::cache {

namespace fs = std::filesystem;

namespace {

constexpr size_t kTenantBytes = 32;
constexpr size_t kKeyBytes = 16;
constexpr size_t kPrefixBytes = kTenantBytes + kKeyBytes;  // one list
constexpr size_t kSampleKeyBytes = kPrefixBytes + 8;
constexpr size_t kChecksumBytes = 8;
// The largest index a list may hold: keeps "index + 1" and the scan bounds in range.
constexpr uint64_t kMaxIndex = std::numeric_limits<uint64_t>::max() - 1;

constexpr char kSamplesCf[] = "samples";
constexpr char kCursorsCf[] = "cursors";
constexpr char kMetaCf[] = "meta";
constexpr char kRequestsCf[] = "requests";
constexpr char kSchemaKey[] = "schema";
constexpr char kSecretKey[] = "server_secret";

void AppendBE64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

uint64_t ReadBE64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string ListPrefix(const TenantId& tenant, const CacheKey& key) {
  std::string out;
  out.reserve(kSampleKeyBytes);
  out.append(reinterpret_cast<const char*>(tenant.bytes.data()), kTenantBytes);
  out.append(reinterpret_cast<const char*>(key.bytes.data()), kKeyBytes);
  return out;
}

std::string SampleKey(const TenantId& tenant, const CacheKey& key, uint64_t index) {
  std::string out = ListPrefix(tenant, key);
  AppendBE64(out, index);
  return out;
}

std::string CursorKey(std::string_view ns, const TenantId& tenant, const CacheKey& key) {
  std::string out;
  out.reserve(ns.size() + 1 + kPrefixBytes);
  out.append(ns);
  out.push_back('\0');
  out += ListPrefix(tenant, key);
  return out;
}

bool StartsWith(const rocksdb::Slice& s, const std::string& prefix) {
  return s.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), s.data());
}

std::string Describe(const TenantId& tenant, const CacheKey& key) {
  // The tenant shortened: enough to tell lists apart in a log line.
  return "key " + to_hex(tenant.bytes).substr(0, 8) + "../" + to_hex(key.bytes);
}

Status FromRocks(const rocksdb::Status& s, const std::string& context) {
  if (s.ok()) return Status::OK();
  std::string m = context + ": " + s.ToString();
  if (s.IsCorruption()) return Status::Corruption(std::move(m));
  if (s.IsNotFound()) return Status::NotFound(std::move(m));
  if (s.IsInvalidArgument()) return Status::InvalidArgument(std::move(m));
  return Status::IOError(std::move(m));
}

// ---- Sample records: checksum(u64 BE) | CBOR ----------------------------------------
// CBOR through nlohmann rather than a hand-written format: self-describing (export and
// future fields need no layout version), binary for the hash, and about as small.

StatusOr<std::string> EncodeSample(const Sample& s) {
  try {
    nlohmann::json j = {
        {"choice", s.choice},
        {"finish_reason", s.finish_reason},
        {"completion_tokens", s.completion_tokens},
        {"prompt_tokens", s.prompt_tokens},
        {"system_fingerprint", s.system_fingerprint},
        {"created", s.created},
        {"backend", s.backend},
        {"model", s.model},
        {"request_sha256",
         nlohmann::json::binary(std::vector<uint8_t>(s.request_sha256.begin(), s.request_sha256.end()))},
    };
    // Optional, so a record without it (every one written before it existed, and every
    // unmeasured sample) reads as "not measured".
    if (s.energy_j >= 0) j["energy_j"] = s.energy_j;
    // Optional too: older records have neither (and read as null), and older builds
    // skip keys they do not know, so the schema version stays.
    if (!s.usage_extra.is_null()) j["usage_extra"] = s.usage_extra;
    if (!s.response_extra.is_null()) j["response_extra"] = s.response_extra;
    std::vector<uint8_t> cbor = nlohmann::json::to_cbor(j);
    std::string out;
    out.reserve(kChecksumBytes + cbor.size());
    AppendBE64(out, XXH3_64bits(cbor.data(), cbor.size()));
    out.append(reinterpret_cast<const char*>(cbor.data()), cbor.size());
    return out;
  } catch (const nlohmann::json::exception& e) {
    return Status::InvalidArgument(std::string("sample cannot be encoded: ") + e.what());
  }
}

Status DecodeFields(nlohmann::json& j, Sample& s) {
  const auto& sha = j.at("request_sha256").get_binary();
  if (sha.size() != s.request_sha256.size()) return Status::Corruption("request_sha256 has wrong size");
  std::copy(sha.begin(), sha.end(), s.request_sha256.begin());
  s.choice = std::move(j.at("choice"));  // the bulk of a record: moved, not copied
  s.finish_reason = j.at("finish_reason").get<std::string>();
  s.completion_tokens = j.at("completion_tokens").get<uint32_t>();
  s.prompt_tokens = j.at("prompt_tokens").get<uint32_t>();
  s.system_fingerprint = j.at("system_fingerprint").get<std::string>();
  s.created = j.at("created").get<int64_t>();
  s.backend = j.at("backend").get<std::string>();
  if (auto it = j.find("model"); it != j.end()) s.model = it->get<std::string>();
  if (auto it = j.find("energy_j"); it != j.end() && it->is_number()) s.energy_j = it->get<double>();
  if (auto it = j.find("usage_extra"); it != j.end() && it->is_object()) s.usage_extra = std::move(*it);
  if (auto it = j.find("response_extra"); it != j.end() && it->is_object()) s.response_extra = std::move(*it);
  return Status::OK();
}

StatusOr<Sample> DecodeSample(const rocksdb::Slice& value, uint64_t index) {
  const std::string where = "sample record at index " + std::to_string(index);
  if (value.size() < kChecksumBytes) return Status::Corruption(where + " is truncated");
  const auto* payload = reinterpret_cast<const uint8_t*>(value.data() + kChecksumBytes);
  const size_t size = value.size() - kChecksumBytes;
  if (ReadBE64(value.data()) != XXH3_64bits(payload, size))
    return Status::Corruption(where + " fails its checksum");
  Sample s;
  try {
    nlohmann::json j = nlohmann::json::from_cbor(payload, payload + size);
    Status st = DecodeFields(j, s);
    if (!st.ok()) return Status::Corruption(where + ": " + st.message());
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(where + " cannot be decoded: " + e.what());
  }
  return s;
}

// ---- Opening --------------------------------------------------------------------------

rocksdb::ColumnFamilyOptions BaseCfOptions(const std::shared_ptr<rocksdb::Cache>& cache,
                                           rocksdb::CompressionType compression, bool whole_key_filter) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.whole_key_filtering = whole_key_filter;
  rocksdb::ColumnFamilyOptions cf;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf.compression = compression;
  return cf;
}

// LZ4 when this RocksDB build has it (Debian's does): cheap, and CBOR text compresses
// well. Otherwise no compression rather than a slow one.
rocksdb::CompressionType PickCompression() {
  for (auto c : rocksdb::GetSupportedCompressions())
    if (c == rocksdb::kLZ4Compression) return c;
  return rocksdb::kNoCompression;
}

// Cursor records merge by taking the larger value. A hit advances its namespace's
// cursor with a Merge, outside the Cacher's per-key lock, so two hits of one namespace
// may reach RocksDB in either order and the cursor still never moves back; a Put
// (SetCursors, Append) still sets a value outright.
class MaxCursorMerge : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* new_value, rocksdb::Logger*) const override {
    if (value.size() != 8 || (existing && existing->size() != 8)) return false;  // corruption
    uint64_t next = ReadBE64(value.data());
    if (existing) next = std::max(next, ReadBE64(existing->data()));
    new_value->clear();
    AppendBE64(*new_value, next);
    return true;
  }
  const char* Name() const override { return "reprise.MaxCursor"; }
};

std::vector<rocksdb::ColumnFamilyDescriptor> Families(const StoreOptions& options) {
  std::shared_ptr<rocksdb::Cache> cache =
      options.block_cache_bytes ? rocksdb::NewLRUCache(options.block_cache_bytes) : nullptr;
  const auto compression = PickCompression();
  // samples are read by list prefix (scans, and point reads within one list): a 48-byte
  // prefix bloom (tenant + key) lets a miss skip SST files. cursors are point-read:
  // whole-key filters.
  auto samples = BaseCfOptions(cache, compression, /*whole_key_filter=*/false);
  samples.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(kPrefixBytes));
  samples.memtable_prefix_bloom_size_ratio = 0.05;
  auto cursors = BaseCfOptions(cache, compression, /*whole_key_filter=*/true);
  cursors.merge_operator = std::make_shared<MaxCursorMerge>();
  auto meta = BaseCfOptions(cache, compression, /*whole_key_filter=*/true);
  // requests: point-read by list (export); created empty in a store made before it.
  auto requests = BaseCfOptions(cache, compression, /*whole_key_filter=*/true);
  return {{rocksdb::kDefaultColumnFamilyName, meta},
          {kSamplesCf, samples},
          {kCursorsCf, cursors},
          {kMetaCf, meta},
          {kRequestsCf, requests}};
}

}  // namespace

// ---- Write failures -------------------------------------------------------------------
// A full disk must not take the proxy down. RocksDB 7.8 (Debian 12's) aborts, in builds
// with assertions as Debian's is, in two places that a full disk reaches:
//   - its own info LOG: a failed write to it poisons the file writer, and the next
//     log line asserts (writable_file_writer.h:312). The LOG goes to stderr instead
//     (StderrLogger), never to the data filesystem.
//   - the WAL: after a failed append, its writer stays poisoned (the "seen error"
//     flag, rocksdb issue 11643), and RocksDB's own recovery, which keeps that writer
//     when the memtables are empty, lets the next write assert. So its automatic
//     recovery is turned off (RecoveryListener), the store refuses writes itself
//     while failed, and recovers by closing and reopening the database (a fresh WAL;
//     kPointInTimeRecovery replays what was acknowledged).

struct detail::StoreRecovery {
  std::mutex mu;
  std::condition_variable wake;
  bool stopping = false;
  std::atomic<bool> failed{false};
  std::atomic<uint64_t> write_errors{0};
  std::atomic<uint64_t> recoveries{0};
  std::thread thread;

  void Fail() {
    {
      std::lock_guard lock(mu);
      if (failed.exchange(true)) return;
    }
    wake.notify_all();
  }
};

namespace {

// RocksDB's info log, warnings and errors only, on stderr beside the proxy's own log.
class StderrLogger : public rocksdb::Logger {
 public:
  StderrLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char line[1024];
    std::vsnprintf(line, sizeof line, format, ap);
    std::fprintf(stderr, "rocksdb: %s\n", line);
  }
};

class RecoveryListener : public rocksdb::EventListener {
 public:
  explicit RecoveryListener(std::shared_ptr<detail::StoreRecovery> recovery) : recovery_(std::move(recovery)) {}
  void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* error) override {
    if (error && !error->ok()) recovery_->Fail();  // a failed flush or compaction: writes stop
  }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status, bool* auto_recovery) override {
    if (auto_recovery) *auto_recovery = false;  // the store reopens instead (see above)
  }

 private:
  std::shared_ptr<detail::StoreRecovery> recovery_;
};

rocksdb::DBOptions MakeDbOptions(const std::shared_ptr<detail::StoreRecovery>& recovery) {
  rocksdb::DBOptions db;
  db.info_log = std::make_shared<StderrLogger>();
  db.listeners.push_back(std::make_shared<RecoveryListener>(recovery));
  db.create_if_missing = true;
  db.create_missing_column_families = true;
  // Default kPointInTimeRecovery: after a crash, replay the WAL up to the first torn
  // record and stop there, which is exactly "lose only unacknowledged writes".
  db.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  // A WAL file can be deleted only once every column family has flushed what it
  // holds, and the small ones (cursors, meta) rarely fill a memtable: without a cap
  // the logs grew to 4x the table files (376 MiB of WAL for 92 MiB of tables at 1M
  // samples, bench/peers.sh). Past 64 MiB of WAL, RocksDB flushes the families that
  // pin the oldest log. Default 0: 4x the total memtable size.
  db.max_total_wal_size = 64ull << 20;
  return db;
}

// Names RocksDB itself puts in a DB directory. A directory with other files and no
// CURRENT is not a store (a wrong path, or debris): it is moved aside, not mixed into.
bool RocksDbFileName(const std::string& name) {
  static constexpr const char* kPrefixes[] = {"LOCK", "LOG", "IDENTITY", "CURRENT", "MANIFEST-", "OPTIONS-"};
  for (const char* p : kPrefixes)
    if (name.rfind(p, 0) == 0) return true;
  const auto dot = name.rfind('.');
  const std::string ext = dot == std::string::npos ? "" : name.substr(dot);
  return ext == ".log" || ext == ".sst" || ext == ".dbtmp" || ext == ".blob";
}

bool LooksForeign(const fs::path& dir, std::string* reason) {
  std::error_code ec;
  if (fs::exists(dir / "CURRENT", ec)) return false;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!RocksDbFileName(name)) {
      *reason = "no RocksDB store here (no CURRENT file) but a foreign entry: " + name;
      return true;
    }
  }
  return false;
}

// Whether a failed open means the store is damaged (move it aside) rather than
// unreachable (permissions, a lock, a full disk: report and let the operator act).
bool IsDamage(const rocksdb::Status& s) {
  return s.IsCorruption() || (s.IsIOError() && s.subcode() == rocksdb::Status::kPathNotFound);
}

// While the database is being reopened after a failure.
Status Unavailable() { return Status::IOError("the cache store is being reopened after a write failure"); }

Status MoveAside(const fs::path& dir, OpenReport* report, const std::string& reason) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  std::string target = dir.string() + ".corrupt-" + std::to_string(now);
  std::error_code ec;
  for (int n = 1; fs::exists(target, ec); ++n)
    target = dir.string() + ".corrupt-" + std::to_string(now) + "-" + std::to_string(n);
  fs::rename(dir, target, ec);
  if (ec) return Status::IOError("cannot move damaged store " + dir.string() + " aside: " + ec.message());
  if (report) *report = OpenReport{true, target, reason};
  return Status::OK();
}

}  // namespace

// ---- Handles: the open DB and its column families -------------------------------------

using Handles = detail::StoreHandles;

struct detail::StoreHandles {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> all;
  rocksdb::ColumnFamilyHandle* samples = nullptr;
  rocksdb::ColumnFamilyHandle* cursors = nullptr;
  rocksdb::ColumnFamilyHandle* meta = nullptr;
  rocksdb::ColumnFamilyHandle* requests = nullptr;
  rocksdb::WriteOptions write;

  ~StoreHandles() {
    if (!db) return;
    for (auto* h : all) db->DestroyColumnFamilyHandle(h);
    db->Close().PermitUncheckedError();
  }
};

namespace {

// The outcome of one open attempt: ok, or the error and whether it is damage.
struct OpenAttempt {
  Status error;
  bool damaged = false;
  std::string reason;
};

OpenAttempt OpenDb(const fs::path& dir, const StoreOptions& options,
                   const std::shared_ptr<detail::StoreRecovery>& recovery, std::unique_ptr<Handles>& out);
OpenAttempt CheckSchema(Handles& h);

}  // namespace

Store::Store(std::unique_ptr<Handles> handles, std::string dir, const StoreOptions& options,
             std::shared_ptr<detail::StoreRecovery> recovery)
    : h_(std::shared_ptr<Handles>(std::move(handles))), dir_(std::move(dir)), options_(options),
      recovery_(std::move(recovery)) {
  recovery_->thread = std::thread([this] { RecoveryLoop(); });
}

Store::~Store() {
  {
    std::lock_guard lock(recovery_->mu);
    recovery_->stopping = true;
  }
  recovery_->wake.notify_all();
  recovery_->thread.join();
}

Store::Health Store::GetHealth() const {
  return {recovery_->write_errors.load(), recovery_->recoveries.load(), !recovery_->failed.load()};
}

Status Store::Writable() {
  if (!recovery_->failed.load(std::memory_order_relaxed)) return Status::OK();
  ++recovery_->write_errors;
  return Status::IOError("the cache store is not writable since a write failed (a full disk?); retrying");
}

Status Store::Written(const Status& status) {
  if (status.ok()) return status;
  ++recovery_->write_errors;
  recovery_->Fail();
  return status;
}

void Store::RecoveryLoop() {
  auto& r = *recovery_;
  std::unique_lock lock(r.mu);
  for (;;) {
    r.wake.wait(lock, [&] { return r.stopping || r.failed.load(); });
    if (r.wake.wait_for(lock, options_.recovery_interval, [&] { return r.stopping; })) return;
    lock.unlock();
    const bool reopened = Reopen();
    lock.lock();
    if (reopened) {
      r.failed = false;
      ++r.recoveries;
      std::fprintf(stderr, "rocksdb: the cache store at %s was reopened after a write failure; caching again\n",
                   dir_.c_str());
    }
  }
}

// Closes the database and opens it again, once the disk has room: a fresh WAL and
// no error state. Requests that hold the old handles finish first (they hold them for
// one call); new ones find none meanwhile and fail (a read error, a refused write).
bool Store::Reopen() {
  struct statvfs fs_stat {};
  if (statvfs(dir_.c_str(), &fs_stat) == 0 &&
      uint64_t(fs_stat.f_bavail) * fs_stat.f_frsize < options_.recovery_min_free_bytes)
    return false;
  if (std::shared_ptr<Handles> old = h_.exchange(nullptr)) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (old.use_count() > 1) {
      if (std::chrono::steady_clock::now() > give_up) {
        h_.store(std::move(old));
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }  // closed here: its error state goes with it
  std::unique_ptr<Handles> fresh;
  OpenAttempt attempt = OpenDb(dir_, options_, recovery_, fresh);
  if (!attempt.error.ok()) {
    std::fprintf(stderr, "rocksdb: reopening the cache store failed (%s); retrying\n",
                 attempt.error.message().c_str());
    return false;  // no database until a later attempt succeeds
  }
  h_.store(std::shared_ptr<Handles>(std::move(fresh)));
  return true;
}

StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path, OpenReport* report) {
  return Open(path, StoreOptions{}, report);
}

StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path, const StoreOptions& options,
                                             OpenReport* report) {
  if (report) *report = OpenReport{};
  if (path.empty()) return Status::InvalidArgument("store path is empty");
  fs::path dir = fs::path(path).lexically_normal();
  if (dir.has_parent_path() && !dir.has_filename()) dir = dir.parent_path();  // "a/b/" -> "a/b"
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create store directory " + dir.string() + ": " + ec.message());

  std::string reason;
  OpenAttempt attempt;
  std::unique_ptr<Handles> h;
  auto recovery = std::make_shared<detail::StoreRecovery>();
  if (LooksForeign(dir, &reason)) {
    attempt = {Status::Corruption(reason), true, reason};
  } else {
    attempt = OpenDb(dir, options, recovery, h);
    if (attempt.error.ok()) attempt = CheckSchema(*h);
  }
  if (attempt.error.ok()) return std::unique_ptr<Store>(new Store(std::move(h), dir.string(), options, recovery));
  if (!attempt.damaged) return attempt.error;

  // Damaged: close what is open, keep the evidence under another name, start empty.
  h.reset();
  Status moved = MoveAside(dir, report, attempt.reason);
  if (!moved.ok()) return moved;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create store directory " + dir.string() + ": " + ec.message());
  attempt = OpenDb(dir, options, recovery, h);
  if (attempt.error.ok()) attempt = CheckSchema(*h);
  if (!attempt.error.ok()) return attempt.error;
  return std::unique_ptr<Store>(new Store(std::move(h), dir.string(), options, recovery));
}

namespace {

OpenAttempt OpenDb(const fs::path& dir, const StoreOptions& options,
                   const std::shared_ptr<detail::StoreRecovery>& recovery, std::unique_ptr<Handles>& out) {
  auto h = std::make_unique<Handles>();
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(MakeDbOptions(recovery), dir.string(), Families(options), &h->all, &raw);
  if (!s.ok()) {
    const bool damaged = IsDamage(s);
    return {FromRocks(s, "cannot open store " + dir.string()), damaged, s.ToString()};
  }
  h->db.reset(raw);
  h->samples = h->all[1];
  h->cursors = h->all[2];
  h->meta = h->all[3];
  h->requests = h->all[4];
  h->write.sync = options.sync_writes;
  out = std::move(h);
  return {};
}

bool EmptyFamily(Handles& h, rocksdb::ColumnFamilyHandle* cf) {
  rocksdb::ReadOptions ro;
  ro.total_order_seek = true;
  std::unique_ptr<rocksdb::Iterator> it(h.db->NewIterator(ro, cf));
  it->SeekToFirst();
  return !it->Valid();
}

// The schema record: written on a fresh store; an unreadable one (or data without one)
// is damage; another version is a refusal.
OpenAttempt CheckSchema(Handles& h) {
  const std::string want = std::to_string(Store::kSchemaVersion);
  std::string value;
  rocksdb::Status s = h.db->Get(rocksdb::ReadOptions(), h.meta, kSchemaKey, &value);
  if (s.IsNotFound()) {
    if (!EmptyFamily(h, h.samples) || !EmptyFamily(h, h.cursors))
      return {Status::Corruption("store has data but no schema record"), true,
              "store has data but no schema record"};
    rocksdb::WriteOptions sync;
    sync.sync = true;  // once per store: cheap, and a schema-less store is "damaged"
    s = h.db->Put(sync, h.meta, kSchemaKey, want);
    return {FromRocks(s, "cannot write the schema record"), false, {}};
  }
  if (!s.ok()) return {FromRocks(s, "cannot read the schema record"), IsDamage(s), s.ToString()};
  const bool digits = !value.empty() && value.size() <= 9 &&
                      std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) {
    std::string reason = "unreadable schema record (" + std::to_string(value.size()) + " bytes)";
    return {Status::Corruption(reason), true, reason};
  }
  if (value != want) {
    return {Status::Corruption("store has schema version " + value + " but this build reads version " + want +
                               "; refusing to open it (use a matching build, or point [cache] path elsewhere)"),
            false, {}};
  }
  return {};
}

}  // namespace

// ---- Reads ----------------------------------------------------------------------------

StatusOr<uint64_t> Store::Count(const TenantId& tenant, const CacheKey& key) {
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  const std::string prefix = ListPrefix(tenant, key);
  const std::string first = SampleKey(tenant, key, 0);
  const rocksdb::Slice lower(first);
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &lower;
  std::unique_ptr<rocksdb::Iterator> it(h->db->NewIterator(ro, h->samples));
  // The last record of the list is its length - 1: lists have no gaps (Append).
  it->SeekForPrev(SampleKey(tenant, key, std::numeric_limits<uint64_t>::max()));
  if (!it->Valid()) {
    if (!it->status().ok()) return FromRocks(it->status(), "count " + Describe(tenant, key));
    return uint64_t{0};
  }
  const rocksdb::Slice k = it->key();
  if (!StartsWith(k, prefix)) return uint64_t{0};
  if (k.size() != kSampleKeyBytes) return Status::Corruption("malformed sample key under " + Describe(tenant, key));
  return ReadBE64(k.data() + kPrefixBytes) + 1;
}

StatusOr<std::vector<Sample>> Store::Read(const TenantId& tenant, const CacheKey& key, uint64_t from,
                                          uint64_t count) {
  std::vector<Sample> out;
  if (count == 0 || from > kMaxIndex) return out;
  const uint64_t end = from + std::min(count, kMaxIndex + 1 - from);  // exclusive, saturated
  if (end - from <= kPointReadMax) return ReadByPoints(tenant, key, from, end);
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  const std::string lo = SampleKey(tenant, key, from);
  const std::string hi = SampleKey(tenant, key, end);
  const rocksdb::Slice upper(hi);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(h->db->NewIterator(ro, h->samples));
  out.reserve(std::min<uint64_t>(end - from, 1024));
  uint64_t expect = from;
  for (it->Seek(lo); it->Valid(); it->Next(), ++expect) {
    const rocksdb::Slice k = it->key();
    if (k.size() != kSampleKeyBytes) return Status::Corruption("malformed sample key under " + Describe(tenant, key));
    const uint64_t index = ReadBE64(k.data() + kPrefixBytes);
    // A gap can only come from damage (Append never leaves one): better an error than
    // serving index k+1 as if it were k.
    if (index != expect)
      return Status::Corruption("sample record at index " + std::to_string(expect) + " is missing");
    auto sample = DecodeSample(it->value(), index);
    if (!sample.ok()) return Status::Corruption(sample.error().message() + " of " + Describe(tenant, key));
    out.push_back(std::move(*sample));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "read " + Describe(tenant, key));
  return out;
}

// A few indices: one point lookup each. Creating an iterator costs more than several
// Gets (it pins a version of every memtable and file), and the hit path reads one
// sample per request.
StatusOr<std::vector<Sample>> Store::ReadByPoints(const TenantId& tenant, const CacheKey& key, uint64_t from,
                                                  uint64_t end) {
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  std::vector<Sample> out;
  bool ended = false;
  for (uint64_t index = from; index < end; ++index) {
    rocksdb::PinnableSlice value;
    rocksdb::Status s = h->db->Get(rocksdb::ReadOptions(), h->samples, SampleKey(tenant, key, index), &value);
    if (s.IsNotFound()) {
      ended = true;
      continue;
    }
    if (!s.ok()) return FromRocks(s, "read " + Describe(tenant, key));
    // A record after a missing one: a gap, which only damage leaves (see Read).
    if (ended) return Status::Corruption("sample record at index " + std::to_string(from + out.size()) + " is missing");
    auto sample = DecodeSample(value, index);
    if (!sample.ok()) return Status::Corruption(sample.error().message() + " of " + Describe(tenant, key));
    out.push_back(std::move(*sample));
  }
  return out;
}

StatusOr<std::string> Store::EncodeRecord(const Sample& sample) { return EncodeSample(sample); }

StatusOr<Sample> Store::DecodeRecord(std::string_view record, uint64_t index) {
  return DecodeSample(rocksdb::Slice(record.data(), record.size()), index);
}

Status Store::PutCopies(const TenantId& tenant, const CacheKey& key,
                        const std::vector<std::pair<uint64_t, std::string>>& records) {
  if (Status st = Writable(); !st.ok()) return st;
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  rocksdb::WriteBatch batch;
  for (auto& [index, record] : records) batch.Put(h->samples, SampleKey(tenant, key, index), record);
  return Written(FromRocks(h->db->Write(h->write, &batch), "copy samples of " + Describe(tenant, key)));
}

StatusOr<std::optional<Sample>> Store::ReadAt(const TenantId& tenant, const CacheKey& key, uint64_t index) {
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  rocksdb::PinnableSlice value;
  rocksdb::Status s = h->db->Get(rocksdb::ReadOptions(), h->samples, SampleKey(tenant, key, index), &value);
  if (s.IsNotFound()) return std::optional<Sample>();
  if (!s.ok()) return FromRocks(s, "read " + Describe(tenant, key));
  auto sample = DecodeSample(value, index);
  if (!sample.ok()) return Status::Corruption(sample.error().message() + " of " + Describe(tenant, key));
  return std::optional<Sample>(std::move(*sample));
}

StatusOr<bool> Store::HasIndex(const TenantId& tenant, const CacheKey& key, uint64_t index) {
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  rocksdb::PinnableSlice value;
  rocksdb::Status s = h->db->Get(rocksdb::ReadOptions(), h->samples, SampleKey(tenant, key, index), &value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return FromRocks(s, "read " + Describe(tenant, key));
  return true;
}

StatusOr<uint64_t> Store::Cursor(std::string_view ns, const TenantId& tenant, const CacheKey& key) {
  if (!ValidNamespace(ns)) return Status::InvalidArgument("invalid namespace");
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  std::string value;
  rocksdb::Status s = h->db->Get(rocksdb::ReadOptions(), h->cursors, CursorKey(ns, tenant, key), &value);
  if (s.IsNotFound()) return uint64_t{0};
  if (!s.ok()) return FromRocks(s, "cursor");
  if (value.size() != 8) return Status::Corruption("malformed cursor record in namespace " + std::string(ns));
  return ReadBE64(value.data());
}

StatusOr<std::vector<std::string>> Store::Namespaces() {
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  std::vector<std::string> out;
  std::unique_ptr<rocksdb::Iterator> it(h->db->NewIterator(rocksdb::ReadOptions(), h->cursors));
  // Skip from namespace to namespace: cost per namespace, not per cursor.
  for (it->SeekToFirst(); it->Valid();) {
    const rocksdb::Slice k = it->key();
    const auto* nul = static_cast<const char*>(std::memchr(k.data(), '\0', k.size()));
    if (!nul) return Status::Corruption("malformed cursor key");
    out.emplace_back(k.data(), nul);
    it->Seek(out.back() + '\x01');
  }
  if (!it->status().ok()) return FromRocks(it->status(), "namespaces");
  return out;
}

// ---- Writes ---------------------------------------------------------------------------

StatusOr<std::string> Store::ServerSecret() {
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  static std::mutex make_once;  // two first callers must not make two secrets
  std::lock_guard lock(make_once);
  std::string value;
  rocksdb::Status s = h->db->Get(rocksdb::ReadOptions(), h->meta, kSecretKey, &value);
  if (s.ok()) {
    if (value.size() != 32) return Status::Corruption("server secret has wrong size");
    return value;
  }
  if (!s.IsNotFound()) return FromRocks(s, "server secret");
  value.resize(32);
  if (RAND_bytes(reinterpret_cast<unsigned char*>(value.data()), 32) != 1)
    return Status::IOError("no randomness for the server secret");
  rocksdb::WriteOptions sync;
  sync.sync = true;
  s = h->db->Put(sync, h->meta, kSecretKey, value);
  if (!s.ok()) return Written(FromRocks(s, "server secret"));
  return value;
}

bool Store::ValidNamespace(std::string_view ns) {
  if (ns.empty() || ns.size() > kMaxNamespaceLength) return false;
  return std::all_of(ns.begin(), ns.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == ':' || c == '-';
  });
}

std::mutex& Store::StripeFor(const TenantId& tenant, const CacheKey& key) {
  const std::string prefix = ListPrefix(tenant, key);
  return stripes_[XXH3_64bits(prefix.data(), prefix.size()) % kStripes];
}

// Every move names a valid namespace and stays within its list. Lists only grow, so a
// length read here without that list's lock can only be an underestimate: safe.
Status Store::CheckMoves(const std::vector<CursorMove>& moves, const TenantId* appended_tenant,
                         const CacheKey* appended_key, uint64_t appended_count) {
  for (const auto& m : moves) {
    if (!ValidNamespace(m.ns)) return Status::InvalidArgument("invalid namespace in cursor move");
    uint64_t length = 0;
    if (appended_tenant && m.tenant == *appended_tenant && m.key == *appended_key) {
      length = appended_count;
    } else if (m.next > 0) {
      // Lists have no gaps: next <= length exactly when index next-1 exists. One
      // point lookup instead of Count's iterator.
      auto has = HasIndex(m.tenant, m.key, m.next - 1);
      if (!has.ok()) return has.error();
      length = *has ? m.next : 0;
      if (!*has) {
        auto n = Count(m.tenant, m.key);  // only to say how long the list is
        if (!n.ok()) return n.error();
        length = *n;
      }
    }
    if (m.next > length)
      return Status::InvalidArgument("cursor of namespace " + m.ns + " would point at " + std::to_string(m.next) +
                                     ", past the end (" + std::to_string(length) + ") of " +
                                     Describe(m.tenant, m.key));
  }
  return Status::OK();
}

namespace {

void PutMoves(rocksdb::WriteBatch& batch, rocksdb::ColumnFamilyHandle* cf,
                     const std::vector<CursorMove>& moves) {
  for (const auto& m : moves) {
    std::string value;
    AppendBE64(value, m.next);
    batch.Put(cf, CursorKey(m.ns, m.tenant, m.key), value);
  }
}

}  // namespace

Status Store::Append(const TenantId& tenant, const CacheKey& key, uint64_t first_index,
                     const std::vector<Sample>& samples, const std::vector<CursorMove>& moves,
                     std::string_view request_record) {
  if (Status st = Writable(); !st.ok()) return st;
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  if (first_index > kMaxIndex || samples.size() > kMaxIndex + 1 - first_index)
    return Status::InvalidArgument("append past the largest index");
  // Encode outside the lock: the critical section is one seek and one write.
  rocksdb::WriteBatch batch;
  for (size_t i = 0; i < samples.size(); ++i) {
    auto value = EncodeSample(samples[i]);
    if (!value.ok()) return value.error();
    batch.Put(h->samples, SampleKey(tenant, key, first_index + i), *value);
  }
  PutMoves(batch, h->cursors, moves);
  if (!request_record.empty())
    batch.Put(h->requests, ListPrefix(tenant, key), rocksdb::Slice(request_record.data(), request_record.size()));

  std::lock_guard<std::mutex> lock(StripeFor(tenant, key));
  auto length = Count(tenant, key);
  if (!length.ok()) return length.error();
  // first_index == length covers both refusals: below it would overwrite (every index
  // < length exists), above it would leave a gap.
  if (first_index != *length)
    return Status::InvalidArgument("append at index " + std::to_string(first_index) + " to " +
                                   Describe(tenant, key) + " whose length is " + std::to_string(*length) +
                                   (first_index < *length ? " (would overwrite)" : " (would leave a gap)"));
  Status st = CheckMoves(moves, &tenant, &key, first_index + samples.size());
  if (!st.ok()) return st;
  return Written(FromRocks(h->db->Write(h->write, &batch), "append to " + Describe(tenant, key)));
}

Status Store::SetCursors(const std::vector<CursorMove>& moves) {
  if (Status st = Writable(); !st.ok()) return st;
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  Status st = CheckMoves(moves, nullptr, nullptr, 0);
  if (!st.ok()) return st;
  rocksdb::WriteBatch batch;
  PutMoves(batch, h->cursors, moves);
  return Written(FromRocks(h->db->Write(h->write, &batch), "set cursors"));
}

Status Store::AdvanceCursor(const CursorMove& move, uint64_t list_length) {
  if (Status st = Writable(); !st.ok()) return st;
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  if (!ValidNamespace(move.ns)) return Status::InvalidArgument("invalid namespace in cursor move");
  if (move.next > list_length)
    return Status::InvalidArgument("cursor of namespace " + move.ns + " would point past the end of its list");
  std::string value;
  AppendBE64(value, move.next);
  return Written(FromRocks(h->db->Merge(h->write, h->cursors, CursorKey(move.ns, move.tenant, move.key), value),
                           "advance cursor"));
}

Status Store::PutMeta(std::string_view name, std::string_view value) {
  if (Status st = Writable(); !st.ok()) return st;
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  if (name == kSchemaKey || name == kSecretKey) return Status::InvalidArgument("reserved meta name");
  return Written(FromRocks(h->db->Put(h->write, h->meta, rocksdb::Slice(name.data(), name.size()),
                                       rocksdb::Slice(value.data(), value.size())),
                           "put meta"));
}

StatusOr<std::optional<std::string>> Store::GetMeta(std::string_view name) {
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  std::string value;
  rocksdb::Status s = h->db->Get(rocksdb::ReadOptions(), h->meta, rocksdb::Slice(name.data(), name.size()), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "get meta");
  return std::optional<std::string>(std::move(value));
}

StatusOr<Store::NamespaceSummary> Store::SummarizeNamespace(std::string_view ns) {
  auto cursors = NamespaceCursors(ns);  // an admin request: the list costs nothing that matters
  if (!cursors.ok()) return cursors.error();
  NamespaceSummary out;
  for (const CursorEntry& entry : *cursors) {
    ++out.keys;
    out.samples_consumed += entry.next;
  }
  return out;
}

StatusOr<std::vector<CursorEntry>> Store::NamespaceCursors(std::string_view ns) {
  if (!ValidNamespace(ns)) return Status::InvalidArgument("invalid namespace");
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  std::vector<CursorEntry> out;
  const std::string begin = std::string(ns) + '\0';
  const std::string end = std::string(ns) + '\x01';
  const rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(h->db->NewIterator(ro, h->cursors));
  for (it->Seek(begin); it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key();
    if (it->value().size() != 8 || k.size() != begin.size() + kPrefixBytes)
      return Status::Corruption("malformed cursor record in namespace " + std::string(ns));
    CursorEntry entry;
    std::memcpy(entry.tenant.bytes.data(), k.data() + begin.size(), kTenantBytes);
    std::memcpy(entry.key.bytes.data(), k.data() + begin.size() + kTenantBytes, kKeyBytes);
    entry.next = ReadBE64(it->value().data());
    out.push_back(entry);
  }
  if (!it->status().ok()) return FromRocks(it->status(), "cursors of namespace " + std::string(ns));
  return out;
}

StatusOr<std::optional<std::string>> Store::Request(const TenantId& tenant, const CacheKey& key) {
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  std::string value;
  rocksdb::Status s = h->db->Get(rocksdb::ReadOptions(), h->requests, ListPrefix(tenant, key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "request record of " + Describe(tenant, key));
  return std::optional<std::string>(std::move(value));
}

uint64_t Store::SizeOnDisk() const {
  std::error_code ec;
  uint64_t total = 0;
  for (auto& entry : std::filesystem::directory_iterator(dir_, ec))
    if (entry.is_regular_file(ec)) total += entry.file_size(ec);
  return total;
}

// One range tombstone, whatever the number of cursors. Tombstones cost reads a little
// until compaction drops them; resets are rare (an operator's replay), so that is cheap.
Status Store::ResetNamespace(std::string_view ns) {
  if (Status st = Writable(); !st.ok()) return st;
  auto h = CurrentHandles();
  if (!h) return Unavailable();
  if (!ValidNamespace(ns)) return Status::InvalidArgument("invalid namespace");
  const std::string begin = std::string(ns) + '\0';
  const std::string end = std::string(ns) + '\x01';
  return Written(FromRocks(h->db->DeleteRange(h->write, h->cursors, begin, end),
                           "reset namespace " + std::string(ns)));
}

}  // namespace reprise::cache
