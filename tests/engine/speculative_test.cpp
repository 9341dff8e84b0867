// LayerSkip self-speculative decoding (engine/speculative.hpp) through the scheduler:
// greedy output equal to plain decoding token for token over hundreds of prompts,
// speculative sampling distributed as the full model (a chi-square test against the
// exact distribution, with the lossy early-exit-only mode as the control that must
// fail it), and the engine's checks and counters.
#include <doctest/doctest.h>

#include <cmath>
#include <future>
#include <thread>
#include <map>

#include "engine/engine.hpp"
#include "engine/speculative.hpp"
#include "tests/engine/tiny_engine.hpp"

using namespace reprise::engine;
using namespace reprise::engine::test;

namespace {

TinyEngine& tiny() {
    static TinyEngine t = TinyEngine::make(tiny_shape(4, 512, 23, "speculative-test"));
    return t;
}

SchedulerOptions spec_options(int exit_layer, int k, bool early_exit_only = false) {
    SchedulerOptions o;
    o.n_ctx = 512;
    o.max_sequences = 64;
    o.exit_layer = exit_layer;
    o.draft_tokens = k;
    o.early_exit_only = early_exit_only;
    return o;
}

struct Run {
    std::vector<std::vector<TokenId>> tokens;  // per job and sample, flattened
    SchedulerCounters counters;
};

Run run(const SchedulerOptions& o, const std::vector<std::vector<TokenId>>& prompts, const SamplerParams& sp, int n,
        int max_tokens, uint64_t key0) {
    Scheduler s(*tiny().model, *tiny().tokenizer, {}, o);
    std::vector<std::shared_ptr<JobOutcome>> outs;
    for (size_t i = 0; i < prompts.size(); ++i) {
        Submission sub = job(n, max_tokens, sp.temperature, key0 + i);
        sub.sampler = sp;
        outs.push_back(std::make_shared<JobOutcome>());
        s.add(sub, collect(outs.back(), n), prompts[i]);
    }
    run_to_idle(s);
    CHECK(s.pool().used_blocks() == 0);
    Run r;
    r.counters = s.counters();
    for (auto& out : outs) {
        REQUIRE_MESSAGE(out->ok, out->error.message);
        for (size_t i = 0; i < out->completion.samples.size(); ++i) {
            r.tokens.push_back(out->completion.samples[i].tokens);
            CHECK(out->streamed[i] == out->completion.samples[i].text);
        }
    }
    return r;
}

// The full model's distribution (after the sampler's transforms) of the next token.
std::map<TokenId, double> next_distribution(const std::vector<TokenId>& prefix, const SamplerParams& sp) {
    const Model& m = *tiny().model;
    auto kv = m.new_kv_cache(int(prefix.size()) + 1);
    std::vector<float> logits(size_t(m.n_vocab()));
    REQUIRE(m.forward(*kv, prefix.data(), int(prefix.size()), 0, logits.data()).ok());
    std::vector<int32_t> ids;
    std::vector<float> probs;
    Sampler::candidates(sp, logits.data(), m.n_vocab(), &ids, &probs);
    std::map<TokenId, double> d;
    for (size_t i = 0; i < ids.size(); ++i) d[ids[i]] = probs[i];
    return d;
}

// Pearson's chi-square of observed counts of token triples against the exact joint
// distribution; cells expecting fewer than 5 are pooled. Returns {statistic, critical
// value at p = 0.001 (Wilson-Hilferty)}.
std::pair<double, double> chi_square(const std::map<std::vector<TokenId>, double>& exact,
                                     const std::map<std::vector<TokenId>, int>& seen, int total) {
    double stat = 0, pooled_e = 0;
    int cells = 0, pooled_o = 0;
    int matched = 0;
    for (auto& [key, p] : exact) {
        const auto it = seen.find(key);
        const int o = it == seen.end() ? 0 : it->second;
        matched += o;
        const double e = p * total;
        if (e < 5) {
            pooled_e += e;
            pooled_o += o;
            continue;
        }
        stat += (o - e) * (o - e) / e;
        ++cells;
    }
    pooled_o += total - matched;  // outcomes the exact distribution gives probability 0
    if (pooled_e > 0 || pooled_o > 0) {
        stat += pooled_e > 0 ? (pooled_o - pooled_e) * (pooled_o - pooled_e) / pooled_e : 1e9;
        ++cells;
    }
    const double df = cells - 1, z = 3.09;
    const double crit = df * std::pow(1 - 2 / (9 * df) + z * std::sqrt(2 / (9 * df)), 3);
    return {stat, crit};
}

}  // namespace

TEST_CASE("speculative: greedy output equals plain decoding token for token over 240 prompts") {
    std::vector<std::vector<TokenId>> prompts;
    for (int i = 0; i < 240; ++i) prompts.push_back(random_prompt(uint64_t(1000 + i), 3 + i % 40));
    SamplerParams greedy;
    greedy.temperature = 0;
    const Run plain = run(spec_options(0, 0), prompts, greedy, 1, 24, 1);
    CHECK(plain.counters.drafted == 0);
    for (auto [E, k] : {std::pair{1, 3}, std::pair{2, 1}, std::pair{3, 5}}) {
        CAPTURE(E);
        CAPTURE(k);
        const Run spec = run(spec_options(E, k), prompts, greedy, 1, 24, 1);
        CHECK(spec.tokens == plain.tokens);
        CHECK(spec.counters.drafted > 0);
        CHECK(spec.counters.accepted > 0);
        CHECK(spec.counters.full_passes < plain.counters.full_passes);  // drafts kept saved full passes
        MESSAGE("E=" << E << " k=" << k << ": acceptance " << double(spec.counters.accepted) / spec.counters.drafted
                     << ", tokens per full pass " << double(spec.counters.generated_tokens) / spec.counters.full_passes);
    }
}

TEST_CASE("speculative: sampling keeps the full model's distribution - early exit alone does not") {
    SamplerParams sp;
    sp.temperature = 2.0f;
    sp.top_k = 4;
    const auto prompt = random_prompt(77, 12);
    // The exact joint distribution of the first three tokens: 4 x 4 x 4 outcomes.
    std::map<std::vector<TokenId>, double> exact;
    for (auto [t1, p1] : next_distribution(prompt, sp)) {
        auto pre1 = prompt;
        pre1.push_back(t1);
        for (auto [t2, p2] : next_distribution(pre1, sp)) {
            auto pre2 = pre1;
            pre2.push_back(t2);
            for (auto [t3, p3] : next_distribution(pre2, sp)) exact[{t1, t2, t3}] = p1 * p2 * p3;
        }
    }
    // Tokens 2 and 3 come out of speculation (k = 3 drafts after the first token).
    const int jobs = 100, n = 64, total = jobs * n;
    auto histogram = [&](const SchedulerOptions& o, SchedulerCounters* c) {
        std::vector<std::vector<TokenId>> prompts(size_t(jobs), prompt);
        const Run r = run(o, prompts, sp, n, 5, 0xC0FFEE);
        std::map<std::vector<TokenId>, int> seen;
        for (auto& t : r.tokens) {
            REQUIRE(t.size() == 5);
            ++seen[{t[0], t[1], t[2]}];
        }
        *c = r.counters;
        return seen;
    };
    SchedulerCounters c;
    const auto spec = chi_square(exact, histogram(spec_options(3, 3), &c), total);
    const double acceptance = double(c.accepted) / double(c.drafted);
    MESSAGE("speculative sampling: chi2 " << spec.first << " (critical " << spec.second << "), acceptance " << acceptance);
    CHECK(spec.first < spec.second);
    // Both branches ran many times: drafts accepted and rejected (residual draws).
    CHECK(acceptance > 0.1);
    CHECK(acceptance < 0.9);

    SchedulerCounters c2;
    const auto lossy = chi_square(exact, histogram(spec_options(3, 3, /*early_exit_only=*/true), &c2), total);
    MESSAGE("early exit only: chi2 " << lossy.first << " (critical " << lossy.second << ")");
    CHECK(lossy.first > lossy.second);
    CHECK(c2.full_passes == 0);
}

TEST_CASE("speculative: verification keeps the agreeing prefix - unit cases") {
    const int V = 5;
    SamplerParams greedy;
    greedy.temperature = 0;
    Rng rng(1);
    // Rows: the full model's argmax is 1, 2, 3, 4 after each position.
    std::vector<float> full(size_t(4 * V), 0.0f);
    for (int r = 0; r < 4; ++r) full[size_t(r * V + r + 1)] = 1.0f;
    std::vector<Draft> drafts{{1, {}, {}}, {2, {}, {}}, {0, {}, {}}};
    Verdict v = verify_drafts(greedy, drafts, full.data(), V, rng);
    CHECK(v.accepted == 2);
    CHECK(v.next == 3);  // the correction
    drafts[2].token = 3;
    v = verify_drafts(greedy, drafts, full.data(), V, rng);
    CHECK(v.accepted == 3);
    CHECK(v.next == 4);  // the bonus token

    // Sampling: a draft the full model cannot produce is always rejected, and the
    // replacement is drawn where p exceeds q.
    SamplerParams sp;
    sp.temperature = 1.0f;
    std::vector<float> logits(size_t(2 * V), -1e9f);
    logits[2] = 0.0f;          // p: token 2 only
    logits[V + 1] = 0.0f;
    Draft d{4, {4}, {1.0f}};   // q: token 4 only
    for (int i = 0; i < 20; ++i) {
        v = verify_drafts(sp, {d}, logits.data(), V, rng);
        CHECK(v.accepted == 0);
        CHECK(v.next == 2);
    }
}

TEST_CASE("speculative: the engine checks the exit layer and reports acceptance") {
    EngineOptions o;
    o.model_path = tiny().path;
    o.threads = 2;
    o.exit_layer = 4;  // the model has 4 layers: E must be below
    auto bad = Engine::load(o);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().find("exit_layer") != std::string::npos);

    o.exit_layer = 2;
    o.draft_tokens = 3;
    auto e = Engine::load(o);
    REQUIRE_MESSAGE(e.ok(), e.error());
    CHECK((*e)->info().exit_layer == 2);
    auto out = std::make_shared<JobOutcome>();
    auto done = std::make_shared<std::promise<void>>();
    Callbacks cb = collect(out, 2);
    auto inner = cb.on_done;
    cb.on_done = [inner, done](const Completion* c, const EngineError* err) {
        inner(c, err);
        done->set_value();
    };
    Submission s = job(2, 40, 0.0f, 3);
    s.text = "The cache keeps";
    REQUIRE_FALSE((*e)->submit(s, cb).has_value());
    REQUIRE(done->get_future().wait_for(std::chrono::seconds(60)) == std::future_status::ready);
    REQUIRE(out->ok);
    // Stats are published after the step that called on_done.
    EngineStats st = (*e)->stats();
    for (int i = 0; i < 200 && (st.running || st.kv_blocks_used != 0); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        st = (*e)->stats();
    }
    CHECK(st.drafted > 0);
    CHECK(st.draft_acceptance_rate() >= 0.0);
    CHECK(st.draft_acceptance_rate() <= 1.0);
    CHECK(st.tokens_per_full_pass() >= 1.0);
    CHECK(st.kv_blocks_total > 0);
    CHECK(st.kv_blocks_used == 0);
}
