#pragma once
// Token sampling with per-sample determinism (DESIGN.md section 6): sample i of a
// request whose canonical hash is `key` draws from an RNG seeded by
// sample_seed(key, i), so the engine regenerates the same sample for the same request
// and index anywhere (no tenant, no server secret, no global state).
//
// Pipeline per step (as llama.cpp's common sampler chain): temperature <= 0 -> greedy
// (argmax, lowest id on ties); otherwise top_k (keep the k largest logits; 0 = off),
// then softmax at the temperature, then top_p (keep the smallest prefix of the
// probability-sorted tokens whose mass reaches top_p; >= 1 = off), renormalise and
// draw with one uniform number from the sample's RNG.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace reprise::engine {

// Documented mixing function: seed = mix64(key ^ mix64(i + 0x9E3779B97F4A7C15)), where
// mix64 is the splitmix64/Murmur3 finaliser (z ^= z>>30; z *= 0xBF58476D1CE4E5B9;
// z ^= z>>27; z *= 0x94D049BB133111EB; z ^= z>>31). Mixing i before the xor keeps
// (k, i) and (k', i') with k ^ i == k' ^ i' apart.
uint64_t mix64(uint64_t z);
uint64_t sample_seed(uint64_t key_hash, uint64_t sample_index);

// xoshiro256** seeded by four splitmix64 outputs of the seed.
class Rng {
public:
    explicit Rng(uint64_t seed);
    uint64_t next();
    float uniform();  // [0, 1), 24 bits

private:
    uint64_t s_[4];
};

struct SamplerParams {
    float temperature = 1.0f;
    int top_k = 0;        // 0: off
    float top_p = 1.0f;   // >= 1: off
};

class Sampler {
public:
    Sampler(const SamplerParams& p, uint64_t key_hash, uint64_t sample_index)
        : p_(p), rng_(sample_seed(key_hash, sample_index)) {}
    // Picks a token from n logits (not modified). Returns -1 only when n <= 0.
    int32_t sample(const float* logits, int n);
    const SamplerParams& params() const { return p_; }
    // The sample's RNG, for speculative decoding's draws (speculative.hpp).
    Rng& rng() { return rng_; }

    // The candidates (ids, probabilities) that survive top_k/top_p at the temperature,
    // in decreasing probability; exposed for tests. Empty for greedy.
    static void candidates(const SamplerParams& p, const float* logits, int n, std::vector<int32_t>* ids, std::vector<float>* probs);

private:
    SamplerParams p_;
    Rng rng_;
    std::vector<int32_t> ids_;
    std::vector<float> probs_;
};

int32_t argmax(const float* logits, int n);

// Stop strings on decoded text. Token pieces are fed in order; text is released only
// once it cannot be the start of a stop string, so a stop string split across tokens
// is caught and never streamed. On a match, the text before the stop string is
// released and the stop string itself (and anything after it) is dropped, as the
// OpenAI API does.
class StopMatcher {
public:
    explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
    // Appends a piece; returns the text that is now safe to emit. After a match,
    // stopped() is true and further pieces are ignored.
    std::string feed(std::string_view piece);
    // End of generation without a stop: releases what was held back.
    std::string flush();
    bool stopped() const { return stopped_; }

private:
    std::vector<std::string> stops_;
    std::string held_;
    bool stopped_ = false;
};


}  // namespace reprise::engine
