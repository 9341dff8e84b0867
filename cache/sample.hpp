#pragma once
// One element of a key's list: one choice as an upstream (or the engine) produced
// it, with what is needed to serve it again exactly and to account for what serving
// it from the cache saved.
#include <cstdint>
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
};

}  // namespace reprise::cache
