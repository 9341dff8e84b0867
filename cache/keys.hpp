#pragma once
// Identities in the cache (DESIGN.md section 1):
//   tenant = HMAC-SHA256(server secret, API key)      who may see an entry
//   key    = XXH3-128(tenant, endpoint, canonical)    which list of samples
// plus the SHA-256 of the canonical request, kept in every sample and checked on
// every hit (a 128-bit key collision must never serve someone else's answer), and
// the seed basis for the engine (no tenant or secret in it: anyone regenerates the
// same sample for the same request and index).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace reprise::cache {

struct TenantId {
  std::array<uint8_t, 32> bytes{};
  friend bool operator==(const TenantId&, const TenantId&) = default;
};

struct CacheKey {
  std::array<uint8_t, 16> bytes{};
  friend bool operator==(const CacheKey&, const CacheKey&) = default;
};

using Sha256 = std::array<uint8_t, 32>;

// Lower-case hex, for logs and file names (never of secrets).
std::string to_hex(const uint8_t* data, size_t size);
template <size_t N>
std::string to_hex(const std::array<uint8_t, N>& bytes) {
  return to_hex(bytes.data(), N);
}

}  // namespace reprise::cache
