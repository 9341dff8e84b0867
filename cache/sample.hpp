#pragma once
// One element of a key's list: one choice as an upstream (or the engine) produced
// it, with what is needed to serve it again exactly and to account for what serving
// it from the cache saved.
#include <atomic>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cache/keys.hpp"

namespace reprise::cache {

struct Sample {
  // The choice object as the backend returned it (message or text, logprobs,
  // finish_reason, ...), without its "index": indices are assigned when served.
  // For embeddings: {"embeddings": [[floats], ...]}, one vector per input, in order.
  nlohmann::json choice;
  std::string finish_reason;
  uint32_t completion_tokens = 0;   // this choice's own
  uint32_t prompt_tokens = 0;       // the generating call's prompt tokens (counted once per response)
  std::string system_fingerprint;
  std::string model;                // the model name the backend answered with
  int64_t created = 0;              // unix seconds when generated
  std::string backend;              // upstream name, or "engine"
  Sha256 request_sha256{};          // of the canonical request; checked on every hit
  // Measured joules this sample's generation spent (the engine on a GPU: its job's
  // measured energy split over its samples by completion tokens), before PUE; < 0: not
  // measured (every upstream's, the engine's on the CPU). The ledger uses it instead of
  // the token estimate when every sample of a call has it. Stored only when measured.
  double energy_j = -1;
  // The rest of the backend's answer that belongs to this sample, so that every field
  // it sent is given back (null when there was none, as in every record written
  // before these existed; stored only when not null):
  //   usage_extra:    this sample's share of the usage object beyond the three counts
  //                   above (prompt_tokens_details, completion_tokens_details, a
  //                   provider's own fields), in the upstream's shape;
  //   response_extra: the answer's own fields beyond id, object, created, model,
  //                   choices, usage and system_fingerprint (service_tier, a
  //                   provider's own fields).
  // How they are split over a call's samples and put together again when several
  // are served in one response: proxy/openai_format.hpp (split_usage_extra, usage_of).
  nlohmann::json usage_extra;
  nlohmann::json response_extra;

  // Not stored. A slot where the proxy keeps this sample's serialised wire forms once
  // made, so a sample served again and again from memory (a replay) is serialised
  // once, not per response. Opaque here: the wire format is the proxy's business.
  mutable std::atomic<std::shared_ptr<const void>> rendered;

  Sample() = default;
  Sample(const Sample& o) { *this = o; }
  Sample(Sample&& o) noexcept { *this = std::move(o); }
  Sample& operator=(const Sample& o) {
    copy_fields(o);
    choice = o.choice;
    usage_extra = o.usage_extra;
    response_extra = o.response_extra;
    return *this;
  }
  Sample& operator=(Sample&& o) noexcept {
    copy_fields(o);
    choice = std::move(o.choice);
    usage_extra = std::move(o.usage_extra);
    response_extra = std::move(o.response_extra);
    return *this;
  }

 private:
  void copy_fields(const Sample& o) {  // everything but the JSON members and `rendered`
    finish_reason = o.finish_reason;
    completion_tokens = o.completion_tokens;
    prompt_tokens = o.prompt_tokens;
    system_fingerprint = o.system_fingerprint;
    model = o.model;
    created = o.created;
    backend = o.backend;
    request_sha256 = o.request_sha256;
    energy_j = o.energy_j;
  }
};

// The value kept in `sample.rendered`, made by make() (filling a T) the first time and
// shared after: a sample served again and again is serialised once. Two threads may
// both make it; one result is kept (they are the same text) and lives as long as the
// sample. The slot holds one type per sample: only its endpoint's dialect renders it.
template <class T, class Make>
const T& rendered_once(const Sample& sample, Make make) {
  auto made = std::static_pointer_cast<const T>(sample.rendered.load(std::memory_order_acquire));
  if (made) return *made;
  auto fresh = std::make_shared<T>();
  make(*fresh);
  std::shared_ptr<const void> expected;
  std::shared_ptr<const void> desired = fresh;
  if (!sample.rendered.compare_exchange_strong(expected, desired)) return *std::static_pointer_cast<const T>(expected);
  return *fresh;
}

}  // namespace reprise::cache
