#include "engine/generate.hpp"

#include <algorithm>

namespace reprise::engine {

Result<GenerateResult> generate(const Model& m, const std::vector<int32_t>& prompt, const GenerateParams& p) {
    if (prompt.empty()) return Status::error("generate: empty prompt");
    if (!p.stop.empty() && !p.piece) return Status::error("generate: stop strings need a piece() decoder");
    const int n_ctx = std::min<int>(int(m.hparams().n_ctx_train), int(prompt.size()) + std::max(0, p.max_tokens));
    auto kv = m.new_kv_cache(n_ctx);
    std::vector<float> logits(size_t(m.n_vocab()));
    if (Status s = m.forward(*kv, prompt.data(), int(prompt.size()), 0, logits.data()); !s.ok()) return s;
    Sampler sampler(p.sampler, p.key_hash, p.sample_index);
    StopMatcher stop(p.stop);
    GenerateResult r;
    int pos = int(prompt.size());
    for (int i = 0; i < p.max_tokens; ++i) {
        const int32_t tok = sampler.sample(logits.data(), m.n_vocab());
        if (std::find(p.stop_tokens.begin(), p.stop_tokens.end(), tok) != p.stop_tokens.end()) {
            r.finish = GenerateResult::Finish::StopToken;
            break;
        }
        r.tokens.push_back(tok);
        if (p.piece) {
            r.text += stop.feed(p.piece(tok));
            if (stop.stopped()) {
                r.finish = GenerateResult::Finish::StopString;
                return r;
            }
        }
        if (i + 1 == p.max_tokens) break;
        if (pos >= n_ctx) break;  // context full: finish as Length
        if (Status s = m.forward(*kv, &tok, 1, pos, logits.data()); !s.ok()) return s;
        ++pos;
    }
    if (p.piece) r.text += stop.flush();
    return r;
}

}  // namespace reprise::engine
