#pragma once
// Self-speculative decoding (LayerSkip, DESIGN.md section 6): the draft model is the
// first E layers of the model itself, read out through the final norm and the shared
// LM head. Drafting k tokens costs k passes over E layers; one batched pass over the
// remaining layers then scores all of them, reusing the K/V rows the draft wrote for
// the first E layers (those layers see exactly the same inputs in both passes).
//
// Acceptance keeps the output distribution of the full model:
// - greedy (temperature <= 0): accept drafts while they equal the full model's argmax,
//   then take the full model's argmax: token for token what plain decoding gives;
// - sampling: speculative sampling (Leviathan et al. 2023, Chen et al. 2023): accept
//   draft d with probability min(1, p(d) / q(d)); on rejection draw from the residual
//   max(0, p - q) renormalised; if all k are accepted, draw one more from p. p and q
//   are the full and draft distributions after the sampler's temperature, top_k and
//   top_p (Sampler::candidates), so the result is distributed as plain sampling.
// Every random number comes from the sample's own RNG, so a sample is reproducible
// with the same model and E, k (not across different E or k: the draws differ).
#include <cstdint>
#include <vector>

#include "engine/sampler.hpp"

namespace reprise::engine {

// One drafted token and the draft distribution it was drawn from (empty for greedy).
struct Draft {
    int32_t token = -1;
    std::vector<int32_t> ids;
    std::vector<float> probs;
};

// Drafts one token from the early exit's logits.
Draft draft_token(const SamplerParams& p, const float* draft_logits, int n_vocab, Rng& rng);

struct Verdict {
    int accepted = 0;   // drafts kept, a prefix of the k
    int32_t next = -1;  // then the full model's token (correction, or the bonus when all were kept)
};

// full_logits: (k + 1) * n_vocab, row i scores the token after draft i (row 0: after
// the token the drafts continue).
Verdict verify_drafts(const SamplerParams& p, const std::vector<Draft>& drafts, const float* full_logits, int n_vocab,
                      Rng& rng);

}  // namespace reprise::engine
