// key_slot: the cluster's hash slot of a key (Redis Cluster spec, "Keys distribution
// model" and its CRC16 appendix): CRC16-XMODEM (poly 0x1021, init 0, no reflection)
// modulo 16384, over the hash tag when the key has a non-empty one.
#include <array>

#include "proxy/redis/asio_cluster_client.hpp"

namespace reprise::redis {

namespace {

// The table is built at compile time rather than pasted from the spec: 256 entries
// of magic numbers are easier to get wrong than eight lines of the polynomial.
constexpr std::array<uint16_t, 256> make_crc16_table() {
  std::array<uint16_t, 256> table{};
  for (int i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) crc = static_cast<uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    table[i] = crc;
  }
  return table;
}
constexpr auto kCrc16Table = make_crc16_table();

}  // namespace

uint16_t crc16(std::string_view bytes) {
  uint16_t crc = 0;
  for (unsigned char c : bytes) crc = static_cast<uint16_t>((crc << 8) ^ kCrc16Table[((crc >> 8) ^ c) & 0xff]);
  return crc;
}

uint16_t key_slot(std::string_view key) {
  // Only the part between the first '{' and the first '}' after it, when that part
  // is not empty: "foo{}{bar}" hashes the whole key, "foo{{bar}}zap" hashes "{bar".
  if (auto open = key.find('{'); open != std::string_view::npos) {
    if (auto close = key.find('}', open + 1); close != std::string_view::npos && close > open + 1)
      key = key.substr(open + 1, close - open - 1);
  }
  return crc16(key) & 16383;
}

}  // namespace reprise::redis
