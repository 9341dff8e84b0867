#include "engine/speculative.hpp"

#include <algorithm>

namespace reprise::engine {
namespace {

bool greedy(const SamplerParams& p) { return !(p.temperature > 0.0f); }

float prob_of(const std::vector<int32_t>& ids, const std::vector<float>& probs, int32_t token) {
    for (size_t i = 0; i < ids.size(); ++i)
        if (ids[i] == token) return probs[i];
    return 0.0f;
}

// Draws from (ids, weights) with weights summing to `total` (not necessarily 1).
int32_t draw(const std::vector<int32_t>& ids, const std::vector<float>& w, double total, Rng& rng) {
    const double r = double(rng.uniform()) * total;
    double cum = 0.0;
    for (size_t i = 0; i < ids.size(); ++i) {
        cum += w[i];
        if (r < cum) return ids[i];
    }
    for (size_t i = ids.size(); i-- > 0;)  // rounding: the last token with weight
        if (w[i] > 0) return ids[i];
    return ids.empty() ? -1 : ids.back();
}

}  // namespace

Draft draft_token(const SamplerParams& p, const float* logits, int n_vocab, Rng& rng) {
    Draft d;
    if (greedy(p)) {
        d.token = argmax(logits, n_vocab);
        return d;
    }
    Sampler::candidates(p, logits, n_vocab, &d.ids, &d.probs);
    double total = 0;
    for (float x : d.probs) total += x;
    d.token = draw(d.ids, d.probs, total, rng);
    return d;
}

Verdict verify_drafts(const SamplerParams& p, const std::vector<Draft>& drafts, const float* full, int n_vocab, Rng& rng) {
    Verdict v;
    const int k = int(drafts.size());
    if (greedy(p)) {
        for (; v.accepted < k; ++v.accepted)
            if (argmax(full + size_t(v.accepted) * n_vocab, n_vocab) != drafts[size_t(v.accepted)].token) break;
        v.next = argmax(full + size_t(v.accepted) * n_vocab, n_vocab);
        return v;
    }
    std::vector<int32_t> ids;
    std::vector<float> probs;
    for (; v.accepted < k; ++v.accepted) {
        const Draft& d = drafts[size_t(v.accepted)];
        Sampler::candidates(p, full + size_t(v.accepted) * n_vocab, n_vocab, &ids, &probs);
        const float pd = prob_of(ids, probs, d.token), qd = prob_of(d.ids, d.probs, d.token);
        // Accept with probability min(1, p/q): u < p/q, written without the division.
        if (rng.uniform() * qd < pd) continue;
        // Rejected: the residual max(0, p - q) over p's support (q > 0 elsewhere only
        // lowers it to 0 there).
        std::vector<float> q(size_t(n_vocab), 0.0f);  // dense: both supports may be the whole vocabulary
        for (size_t i = 0; i < d.ids.size(); ++i) q[size_t(d.ids[i])] = d.probs[i];
        std::vector<float> residual(ids.size());
        double total = 0;
        for (size_t i = 0; i < ids.size(); ++i) total += residual[i] = std::max(0.0f, probs[i] - q[size_t(ids[i])]);
        v.next = total > 0 ? draw(ids, residual, total, rng) : draw(ids, probs, 1.0, rng);
        return v;
    }
    Sampler::candidates(p, full + size_t(k) * n_vocab, n_vocab, &ids, &probs);
    v.next = draw(ids, probs, 1.0, rng);
    return v;
}

}  // namespace reprise::engine
