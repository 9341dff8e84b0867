#pragma once
// One sample: prefill the prompt as a batch, then decode token by token with a
// Sampler seeded from (key_hash, sample_index), up to max_tokens, stopping at a stop
// token (not emitted) or a stop string on the decoded text (needs `piece`).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/model.hpp"
#include "engine/sampler.hpp"
#include "engine/status.hpp"

namespace reprise::engine {

struct GenerateParams {
    SamplerParams sampler;
    uint64_t key_hash = 0;
    uint64_t sample_index = 0;
    int max_tokens = 16;
    std::vector<int32_t> stop_tokens;          // e.g. EOS
    std::vector<std::string> stop;             // stop strings (need piece)
    std::function<std::string(int32_t)> piece; // token -> bytes, for stop strings/text
};

struct GenerateResult {
    std::vector<int32_t> tokens;  // generated (stop token excluded)
    std::string text;             // decoded text up to a stop string (when piece is set)
    enum class Finish { Length, StopToken, StopString } finish = Finish::Length;
};

Result<GenerateResult> generate(const Model& m, const std::vector<int32_t>& prompt, const GenerateParams& p);

}  // namespace reprise::engine
