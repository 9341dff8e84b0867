#pragma once
// The content the crash writer (store_crash_writer.cpp) appends, as a pure function of
// (key number, index), shared with the kill -9 test in tests/unit/store_test.cpp so
// that the reader can check every surviving record exactly.
#include <cstdint>
#include <string>

#include "cache/sample.hpp"

namespace reprise::cache::crash {

inline constexpr int kCrashKeys = 8;
inline const char* const kCrashNamespaces[] = {"crash-a", "crash-b"};

inline TenantId CrashTenant(int key_no) {
  TenantId t;
  t.bytes.fill(0xA5);
  t.bytes[31] = static_cast<uint8_t>(key_no % 2);
  return t;
}

inline CacheKey CrashKey(int key_no) {
  CacheKey k;
  k.bytes[15] = static_cast<uint8_t>(key_no);
  return k;
}

inline Sample CrashSample(int key_no, uint64_t index) {
  Sample s;
  // Appended piecewise: GCC 12 at -O3 warns (-Wrestrict, falsely) on "k" + to_string().
  std::string tag = "k";
  tag += std::to_string(key_no);
  tag += "-i";
  tag += std::to_string(index);
  s.choice = {{"message", {{"role", "assistant"}, {"content", tag + std::string(40, 'x')}}},
              {"logprobs", nullptr}};
  s.finish_reason = index % 3 == 0 ? "length" : "stop";
  s.completion_tokens = static_cast<uint32_t>(index * 7 % 1000);
  s.prompt_tokens = static_cast<uint32_t>(key_no + 1);
  s.system_fingerprint = "fp_" + std::to_string(key_no);
  s.created = 1700000000 + static_cast<int64_t>(index);
  s.backend = "crash";
  for (size_t i = 0; i < s.request_sha256.size(); ++i)
    s.request_sha256[i] = static_cast<uint8_t>(key_no * 31 + i);
  return s;
}

}  // namespace reprise::cache::crash
