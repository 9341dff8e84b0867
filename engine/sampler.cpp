#include "engine/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace reprise::engine {

uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t sample_seed(uint64_t key_hash, uint64_t i) { return mix64(key_hash ^ mix64(i + 0x9E3779B97F4A7C15ull)); }

Rng::Rng(uint64_t seed) {
    for (auto& s : s_) {
        seed += 0x9E3779B97F4A7C15ull;
        s = mix64(seed);
    }
}

uint64_t Rng::next() {
    auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

float Rng::uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }

int32_t argmax(const float* logits, int n) {
    if (n <= 0) return -1;
    int32_t best = 0;
    for (int i = 1; i < n; ++i)
        if (logits[i] > logits[best]) best = i;
    return best;
}

void Sampler::candidates(const SamplerParams& p, const float* logits, int n, std::vector<int32_t>* ids, std::vector<float>* probs) {
    ids->clear();
    probs->clear();
    if (n <= 0 || !(p.temperature > 0.0f)) return;
    ids->resize(size_t(n));
    std::iota(ids->begin(), ids->end(), 0);
    // Descending logit, ascending id on ties: a total order, so results never depend
    // on the sort's stability.
    auto cmp = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    size_t k = size_t(n);
    if (p.top_k > 0 && size_t(p.top_k) < k) {
        k = size_t(p.top_k);
        std::partial_sort(ids->begin(), ids->begin() + long(k), ids->end(), cmp);
        ids->resize(k);
    } else {
        std::sort(ids->begin(), ids->end(), cmp);
    }
    // Softmax at the temperature (double accumulation; max subtracted).
    const double mx = logits[(*ids)[0]];
    std::vector<double> e(k);
    double sum = 0.0;
    for (size_t j = 0; j < k; ++j) sum += e[j] = std::exp((double(logits[(*ids)[j]]) - mx) / p.temperature);
    size_t keep = k;
    if (p.top_p < 1.0f) {
        double cum = 0.0;
        for (size_t j = 0; j < k; ++j) {
            cum += e[j] / sum;
            if (cum >= double(p.top_p)) { keep = j + 1; break; }
        }
    }
    ids->resize(keep);
    double kept = 0.0;
    for (size_t j = 0; j < keep; ++j) kept += e[j];
    probs->resize(keep);
    for (size_t j = 0; j < keep; ++j) (*probs)[j] = float(e[j] / kept);
}

int32_t Sampler::sample(const float* logits, int n) {
    if (n <= 0) return -1;
    if (!(p_.temperature > 0.0f)) return argmax(logits, n);
    candidates(p_, logits, n, &ids_, &probs_);
    const float r = rng_.uniform();
    float cum = 0.0f;
    for (size_t j = 0; j < ids_.size(); ++j) {
        cum += probs_[j];
        if (r < cum) return ids_[j];
    }
    return ids_.back();  // rounding left r >= the total: the last candidate
}

std::string StopMatcher::feed(std::string_view piece) {
    if (stopped_) return {};
    held_.append(piece);
    // Earliest complete stop string.
    size_t first = std::string::npos;
    for (const auto& s : stops_) {
        if (s.empty()) continue;
        const size_t at = held_.find(s);
        if (at < first) first = at;
    }
    if (first != std::string::npos) {
        stopped_ = true;
        std::string out = held_.substr(0, first);
        held_.clear();
        return out;
    }
    // Hold back the longest suffix that is a proper prefix of some stop string.
    size_t hold = 0;
    for (const auto& s : stops_)
        for (size_t len = std::min(s.size() - (s.empty() ? 0 : 1), held_.size()); len > hold; --len)
            if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
                hold = len;
                break;
            }
    std::string out = held_.substr(0, held_.size() - hold);
    held_.erase(0, held_.size() - hold);
    return out;
}

std::string StopMatcher::flush() {
    std::string out;
    if (!stopped_) out.swap(held_);
    return out;
}

}  // namespace reprise::engine
