// The canonical-request memo: bounded in bytes, counted at its real footprint.
#include <doctest/doctest.h>

#include <malloc.h>

#include <nlohmann/json.hpp>

#include "cache/canonical_memo.hpp"

using namespace reprise::cache;
using nlohmann::json;

namespace {

// About `bytes` of chat body made of many short messages (parsed, ~10x its text).
std::string body_of(int id, size_t bytes) {
  json messages = json::array();
  while (messages.dump().size() + 100 < bytes)
    for (int i = 0; i < 32; ++i) messages.push_back({{"role", "user"}, {"content", "m" + std::to_string(i)}});
  messages.push_back({{"role", "user"}, {"content", "body " + std::to_string(id)}});
  return json{{"model", "m"}, {"messages", messages}}.dump();
}

}  // namespace

TEST_CASE("canonical memo: bounded in bytes, whatever the number of distinct bodies") {
  const size_t bound = 4 << 20;
  CanonicalMemo memo(bound);
  for (int i = 0; i < 2000; ++i) {
    auto made = memo.canonical(Endpoint::chat_completions, body_of(i, 12'000));
    REQUIRE(made);
  }
  CHECK(memo.bytes() <= bound);
  CHECK(memo.bytes() > bound / 2);  // it is used, not emptied
  // Entries of 12 KB bodies cost ~100 KB each: far fewer than the old 4,096-entry cap.
  CHECK(memo.entries() < 100);
  CHECK(memo.entries() > 10);

  // A repeat is served from the memo: the same object.
  const std::string body = body_of(1999, 12'000);
  auto a = memo.canonical(Endpoint::chat_completions, body);
  auto b = memo.canonical(Endpoint::chat_completions, body);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a.value().get() == b.value().get());

  // 0 keeps nothing.
  CanonicalMemo off(0);
  REQUIRE(off.canonical(Endpoint::chat_completions, body));
  CHECK(off.entries() == 0);
}

TEST_CASE("canonical memo: the footprint estimate matches what the allocator hands out") {
  // What malloc has handed out for 50 canonical requests, against the estimate.
  std::vector<std::pair<std::string, std::shared_ptr<const CanonicalRequest>>> kept;
  size_t estimate = 0;
  const size_t before = mallinfo2().uordblks;
  for (int i = 0; i < 50; ++i) {
    std::string raw = "chat.completions\n" + body_of(i, 12'000);
    raw.shrink_to_fit();
    auto made = canonicalize(Endpoint::chat_completions, raw.substr(17));
    REQUIRE(made);
    auto request = std::make_shared<const CanonicalRequest>(std::move(made.value()));
    estimate += CanonicalMemo::footprint_of(raw, *request);
    kept.emplace_back(std::move(raw), std::move(request));
  }
  const double used = double(mallinfo2().uordblks - before);
  MESSAGE("allocated " << used / 50 << " bytes per entry, estimated " << double(estimate) / 50);
  CHECK(double(estimate) > 0.8 * used);
  CHECK(double(estimate) < 1.5 * used);
}
