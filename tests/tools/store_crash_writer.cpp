// store_crash_writer PATH: opens the store at PATH and appends forever, for the kill -9
// test in tests/unit/store_test.cpp ("Store: kill -9 under write load"). Every record's
// content is a pure function of (key number, index), so after a SIGKILL a reader can
// check each surviving record, the absence of gaps, and that no cursor points past the
// end of its list. That content comes from crash_content.hpp, which the test shares.
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cache/store.hpp"
#include "crash_content.hpp"

namespace {

using reprise::cache::CacheKey;
using reprise::cache::CursorMove;
using reprise::cache::Sample;
using reprise::cache::Store;
using reprise::cache::TenantId;
using namespace reprise::cache::crash;

int Fail(const char* what, const reprise::cache::Status& st) {
  std::fprintf(stderr, "store_crash_writer: %s: %s\n", what, st.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: store_crash_writer PATH\n");
    return 2;
  }
  auto store = Store::Open(argv[1]);
  if (!store.ok()) return Fail("open", store.error());
  std::vector<uint64_t> length(kCrashKeys);
  for (int k = 0; k < kCrashKeys; ++k) {
    auto n = (*store)->Count(CrashTenant(k), CrashKey(k));
    if (!n.ok()) return Fail("count", n.error());
    length[k] = *n;
  }
  std::mt19937_64 rng(std::chrono::steady_clock::now().time_since_epoch().count());
  for (uint64_t op = 0;; ++op) {
    const int k = static_cast<int>(rng() % kCrashKeys);
    const uint64_t n = 1 + rng() % 4;  // small batches: many writes for a kill to land in
    std::vector<Sample> samples;
    for (uint64_t i = 0; i < n; ++i) samples.push_back(CrashSample(k, length[k] + i));
    std::vector<CursorMove> moves;
    for (const char* ns : kCrashNamespaces)
      moves.push_back({ns, CrashTenant(k), CrashKey(k), rng() % (length[k] + n + 1)});
    auto st = (*store)->Append(CrashTenant(k), CrashKey(k), length[k], samples, moves);
    if (!st.ok()) return Fail("append", st);
    length[k] += n;
    if (op == 0) {  // tells the test that writes are landing (opening can be slow under load)
      std::FILE* started = std::fopen((std::string(argv[1]) + ".started").c_str(), "w");
      if (started) std::fclose(started);
    }
    if (op % 50 == 49) {  // cursor-only writes and resets, interleaved with the appends
      const int other = static_cast<int>(rng() % kCrashKeys);
      st = (*store)->SetCursors({{kCrashNamespaces[0], CrashTenant(other), CrashKey(other), length[other]}});
      if (!st.ok()) return Fail("set cursors", st);
    }
    if (op % 500 == 499 && !(st = (*store)->ResetNamespace(kCrashNamespaces[1])).ok()) return Fail("reset", st);
    // A short pause per append: still thousands of writes per second for a kill to
    // land among, but few enough samples that the test can check them all quickly.
    std::this_thread::sleep_for(std::chrono::microseconds(40));
  }
}
