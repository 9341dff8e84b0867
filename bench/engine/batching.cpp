// engine_batching_bench: what the paged KV cache, continuous batching and LayerSkip
// self-speculative decoding buy on the CPU, through the engine's public API
// (engine/engine.hpp: Engine::load, submit, stats). Prints Markdown tables:
//   a. n samples of ONE prompt: one Submission with n samples (the prompt prefilled
//      once, its KV blocks shared) vs n Submissions of 1 sample (each prefills and
//      stores its own copy): tokens/s and peak KV memory;
//   b. batched decode: B independent requests at once: aggregate tokens/s, speed-up
//      over B = 1;
//   c. self-speculative decoding by exit layer E and draft length k, greedy, batch 1,
//      on a SYNTHETIC model whose late layers barely change the residual stream
//      (TinyLlamaShape::late_layer_scale, engine/model_maker.hpp): tokens/s vs plain
//      decoding, acceptance, tokens per full pass, and whether the tokens are plain
//      decoding's;
//   d. acceptance on trained weights: stories260K (llama2.c, 5 layers) for every E and
//      k in {2, 4}, greedy and temperature 1 (needs the shared fixtures; skipped if
//      they are missing).
// Models (random weights, the built-in vocabulary) are generated into a temporary
// directory. Not part of ctest: `make bench-batching` runs it and writes
// bench/results/engine_batching.md (and a PNG via bench/engine/batching_plot.mjs).
//
//   engine_batching_bench [--quick] [--sections abcd] [--threads N] [--rounds R]
//       [--prompt 256] [--gen 64] [--max-n 64] [--max-b 64] [--spec-gen 128]
//       [--late-scale 0.05] [--late-from 2] [--fixtures DIR] [--out FILE.md] [--json FILE]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "engine/engine.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_writer.hpp"
#include "engine/llama2c_convert.hpp"
#include "engine/model.hpp"
#include "engine/model_maker.hpp"
#include "engine/sampler.hpp"

#ifndef REPRISE_BENCH_FIXTURES
#define REPRISE_BENCH_FIXTURES "../shared/fixtures"
#endif

using namespace reprise::engine;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
    bool quick = false;
    std::string sections = "abcd";
    int threads = 0;  // 0: all cores
    int rounds = 0;   // 0: 3 (1 with --quick)
    int rounds_a = 0; // section a (the longest): 0: 2 (1 with --quick)
    int prompt = 256, gen = 64, max_n = 64, max_b = 64, spec_gen = 128;
    float late_scale = 0.05f;
    int late_from = 2;
    std::string fixtures = REPRISE_BENCH_FIXTURES;
    std::string out_md, out_json;
};

// The Markdown report, printed as it is made and kept for --out.
std::string g_md;
void md(const std::string& s) {
    g_md += s;
    std::fputs(s.c_str(), stdout);
    std::fflush(stdout);
}
std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}
void progress(const std::string& s) {
    std::fprintf(stderr, "  .. %s\n", s.c_str());
    std::fflush(stderr);
}

// The JSON the plot script reads: one array of flat objects per section.
struct Json {
    std::vector<std::pair<std::string, std::vector<std::string>>> sections;
    std::vector<std::string>& section(const std::string& name) {
        for (auto& s : sections)
            if (s.first == name) return s.second;
        sections.push_back({name, {}});
        return sections.back().second;
    }
    std::string dump(const std::string& meta) const {
        std::string o = "{\n  \"meta\": " + meta;
        for (auto& [name, rows] : sections) {
            o += ",\n  \"" + name + "\": [";
            for (size_t i = 0; i < rows.size(); ++i) o += (i ? ",\n    " : "\n    ") + rows[i];
            o += "\n  ]";
        }
        return o + "\n}\n";
    }
} g_json;
std::string jnum(double v) { return std::isfinite(v) ? fmt("%.6g", v) : "null"; }

uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
// n token ids drawn from [0, n_normal): no control token in a prompt.
std::vector<TokenId> random_prompt(int n, int n_normal, uint64_t seed) {
    std::vector<TokenId> t(static_cast<size_t>(n));
    for (auto& x : t) x = TokenId(splitmix(seed) % uint64_t(n_normal));
    return t;
}

Submission tokens_submission(const std::vector<TokenId>& prompt, int n, float temperature, int max_tokens, uint64_t key,
                             uint64_t first_index) {
    Submission s;
    s.use_tokens = true;
    s.tokens = prompt;
    s.n = n;
    s.sampler.temperature = temperature;
    s.max_tokens = max_tokens;
    s.key_hash = key;
    s.first_index = [first_index] { return first_index; };
    return s;
}

// One measured run: the jobs are submitted at once; wall time from the first submit to
// the last completion; the KV pool's peak from stats() polled every millisecond.
struct Run {
    bool ok = true;
    std::string error;
    double wall = 0;
    EngineStats stats;
    int peak_blocks = 0;
    uint64_t peak_kv_bytes = 0;
    std::vector<Completion> completions;  // per submission, in order
    uint64_t generated() const {
        uint64_t g = 0;
        for (auto& c : completions)
            for (auto& s : c.samples) g += uint64_t(s.completion_tokens);
        return g;
    }
};

Run run_jobs(Engine& engine, std::vector<Submission> subs) {
    Run r;
    r.completions.resize(subs.size());
    std::mutex mu;
    std::condition_variable cv;
    size_t done = 0;
    Clock::time_point last_done;
    std::atomic<bool> stop_poll{false};
    int peak = 0;
    std::thread poller([&] {
        while (!stop_poll.load()) {
            peak = std::max(peak, engine.stats().kv_blocks_used);
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    });
    const EngineStats before = engine.stats();
    const uint64_t expect = before.jobs + before.jobs_failed + subs.size();
    const auto t0 = Clock::now();
    for (size_t i = 0; i < subs.size(); ++i) {
        Callbacks cb;
        cb.on_done = [&, i](const Completion* c, const EngineError* e) {
            std::lock_guard lock(mu);
            if (c) r.completions[i] = *c;
            else if (r.ok) r.ok = false, r.error = e ? e->message : "unknown error";
            last_done = Clock::now();
            ++done;
            cv.notify_all();
        };
        if (auto err = engine.submit(std::move(subs[i]), std::move(cb))) {
            std::lock_guard lock(mu);
            r.ok = false;
            r.error = "submit: " + err->message;
            ++done;
        }
    }
    {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return done == subs.size(); });
    }
    // Let the engine publish the stats of its last step.
    for (int i = 0; i < 2000; ++i) {
        const EngineStats st = engine.stats();
        if (st.jobs + st.jobs_failed >= expect && !st.running) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    stop_poll = true;
    poller.join();
    r.wall = std::chrono::duration<double>(last_done - t0).count();
    r.stats = engine.stats();
    r.peak_blocks = std::max(peak, r.stats.kv_blocks_used);
    r.peak_kv_bytes = uint64_t(r.peak_blocks) * r.stats.kv_bytes_per_token * uint64_t(r.stats.kv_block_size);
    return r;
}

std::unique_ptr<Engine> load_engine(const EngineOptions& o) {
    auto e = Engine::load(o);
    if (!e.ok()) {
        std::fprintf(stderr, "engine_batching_bench: %s\n", e.error().c_str());
        std::exit(1);
    }
    return std::move(e).value();
}

Status write_model(const TinyLlamaShape& s, const std::string& path) {
    const std::vector<uint8_t> vbytes = builtin_vocab_gguf();
    auto vf = GgufFile::from_memory(vbytes.data(), vbytes.size());
    if (!vf.ok()) return Status::error(vf.error());
    GgufWriter w;
    if (Status st = make_tiny_llama(s, **vf, &w); !st.ok()) return st;
    return w.write_file(path);
}

double mb(uint64_t bytes) { return double(bytes) / double(1u << 20); }
std::string same_str(bool same) { return same ? "yes" : "**NO**"; }

EngineOptions base_options(const Options& opt, const std::string& model, int context) {
    EngineOptions o;
    o.model_path = model;
    o.threads = opt.threads;
    o.context = context;
    o.max_queued = 4096;
    o.kv_block_size = 16;
    o.kv_cache_mb = 1024;
    o.max_batch_tokens = 512;
    o.max_sequences = 64;
    return o;
}

std::vector<int> powers_of_two(int max) {
    std::vector<int> v;
    for (int n = 1; n <= max; n *= 2) v.push_back(n);
    return v;
}

// ---- a. sharing the prompt's blocks between n samples ----
void section_a(const Options& opt, const std::string& model, int n_normal) {
    md("\n## a. n samples of one prompt: shared prompt blocks vs n separate requests\n\n");
    md(fmt("One %d-token prompt, %d tokens per sample (max_tokens; fewer if the sample draws an end-of-generation "
           "token), temperature 1. **shared**: one Submission with n samples (the prompt is prefilled once and its KV "
           "blocks are shared, copy-on-write). **separate**: n Submissions of 1 sample each with the same prompt and "
           "sample indices 0..n-1 (each prefills and stores its own copy). tokens/s = generated tokens / wall time "
           "(prefill included: that is what sharing saves). Peak KV = the most KV blocks in use (EngineStats, polled "
           "every ms) x block bytes. \"same tokens\": every sample's tokens are identical in both modes (sample i is "
           "seeded by its index, and the forward pass is batch invariant). Best of %d rounds (shared and separate "
           "alternate; a fresh engine per run); the KV figures are the best round's.\n\n",
           opt.prompt, opt.gen, opt.rounds_a));
    md("| n | shared tok/s | separate tok/s | speed-up | shared wall s | separate wall s | shared peak KV MB | "
       "separate peak KV MB | KV saved | tokens (shared / separate) | same tokens |\n");
    md("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|\n");
    const std::vector<TokenId> prompt = random_prompt(opt.prompt, n_normal, 42);
    EngineOptions o = base_options(opt, model, opt.prompt + opt.gen + 16);
    for (int n : powers_of_two(opt.max_n)) {
        progress(fmt("a: n = %d", n));
        Run shared, separate;
        auto keep_best = [](Run& best, Run r) {
            if (!r.ok || !best.ok) {
                if (best.ok) best = std::move(r);
                return;
            }
            if (best.completions.empty() || r.wall < best.wall) best = std::move(r);
        };
        for (int round = 0; round < opt.rounds_a; ++round) {
            {
                auto engine = load_engine(o);
                std::vector<Submission> subs;
                subs.push_back(tokens_submission(prompt, n, 1.0f, opt.gen, 7, 0));
                keep_best(shared, run_jobs(*engine, std::move(subs)));
            }
            {
                auto engine = load_engine(o);
                std::vector<Submission> subs;
                for (int i = 0; i < n; ++i) subs.push_back(tokens_submission(prompt, 1, 1.0f, opt.gen, 7, uint64_t(i)));
                keep_best(separate, run_jobs(*engine, std::move(subs)));
            }
        }
        if (!shared.ok || !separate.ok) {
            md(fmt("| %d | failed: %s |\n", n, (shared.ok ? separate.error : shared.error).c_str()));
            continue;
        }
        bool same = shared.completions[0].samples.size() == size_t(n);
        for (int i = 0; same && i < n; ++i)
            same = shared.completions[0].samples[size_t(i)].tokens == separate.completions[size_t(i)].samples[0].tokens;
        const double ts = double(shared.generated()) / shared.wall, tp = double(separate.generated()) / separate.wall;
        md(fmt("| %d | %.1f | %.1f | %.2fx | %.2f | %.2f | %.1f | %.1f | %.1fx | %llu / %llu | %s |\n", n, ts, tp, ts / tp,
               shared.wall, separate.wall, mb(shared.peak_kv_bytes), mb(separate.peak_kv_bytes),
               double(separate.peak_kv_bytes) / double(std::max<uint64_t>(1, shared.peak_kv_bytes)),
               (unsigned long long)shared.generated(), (unsigned long long)separate.generated(), same_str(same).c_str()));
        g_json.section("sharing").push_back(
            fmt("{\"n\": %d, \"shared_tps\": %s, \"separate_tps\": %s, \"shared_kv_mb\": %s, \"separate_kv_mb\": %s, "
                "\"shared_wall\": %s, \"separate_wall\": %s, \"same\": %s}",
                n, jnum(ts).c_str(), jnum(tp).c_str(), jnum(mb(shared.peak_kv_bytes)).c_str(),
                jnum(mb(separate.peak_kv_bytes)).c_str(), jnum(shared.wall).c_str(), jnum(separate.wall).c_str(),
                same ? "true" : "false"));
    }
}

// ---- b. batched decode throughput ----
void section_b(const Options& opt, const std::string& model, int n_normal) {
    const int prompt_len = 16;
    md("\n## b. Batched decode: B concurrent independent requests\n\n");
    md(fmt("B requests with different %d-token prompts submitted at once, %d tokens each, temperature 1, "
           "max_sequences 64, max_batch_tokens 512. **decode tok/s** = decode tokens (generated minus each sample's "
           "first token, which the prefill step yields) / EngineStats::decode_seconds (step time apportioned by token "
           "share); **end-to-end tok/s** = all generated tokens / wall time. Best of %d rounds.\n\n",
           prompt_len, opt.gen, opt.rounds));
    md("| B | decode tok/s | speed-up vs B=1 | end-to-end tok/s | wall s | steps | tokens generated | peak KV MB |\n");
    md("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    EngineOptions o = base_options(opt, model, prompt_len + opt.gen + 16);
    double base = 0;
    for (int B : powers_of_two(opt.max_b)) {
        progress(fmt("b: B = %d", B));
        Run best;
        double best_dec = 0;
        for (int round = 0; round < opt.rounds; ++round) {
            auto engine = load_engine(o);
            std::vector<Submission> subs;
            for (int i = 0; i < B; ++i)
                subs.push_back(tokens_submission(random_prompt(prompt_len, n_normal, 1000 + uint64_t(i)), 1, 1.0f, opt.gen,
                                                 100 + uint64_t(i), 0));
            Run r = run_jobs(*engine, std::move(subs));
            if (!r.ok) {
                best = r;
                break;
            }
            const double dec = double(r.stats.generated_tokens - r.stats.samples) / r.stats.decode_seconds;
            if (dec > best_dec) best_dec = dec, best = std::move(r);
        }
        if (!best.ok) {
            md(fmt("| %d | failed: %s |\n", B, best.error.c_str()));
            continue;
        }
        if (B == 1) base = best_dec;
        const double e2e = double(best.generated()) / best.wall;
        md(fmt("| %d | %.1f | %.2fx | %.1f | %.2f | %llu | %llu | %.1f |\n", B, best_dec, best_dec / base, e2e, best.wall,
               (unsigned long long)best.stats.steps, (unsigned long long)best.generated(), mb(best.peak_kv_bytes)));
        g_json.section("batching").push_back(fmt("{\"B\": %d, \"decode_tps\": %s, \"e2e_tps\": %s, \"speedup\": %s}", B,
                                                 jnum(best_dec).c_str(), jnum(e2e).c_str(), jnum(best_dec / base).c_str()));
    }
}

// ---- c/d. self-speculative decoding ----
struct SpecResult {
    bool ok = true;
    std::string error;
    double tps = 0;      // best over rounds
    double accept = 0, per_pass = 0;
    uint64_t generated = 0;
    std::vector<std::vector<TokenId>> tokens;  // per prompt
};

// One round of one configuration: each prompt alone (batch 1), one after the other, on
// a fresh engine. The first round records the acceptance figures and the tokens; later
// rounds must reproduce the tokens; tokens/s is the best round's.
void run_spec_round(const EngineOptions& o, const std::vector<std::vector<TokenId>>& prompts, float temperature, int gen,
                    SpecResult* res, bool first) {
    if (!res->ok) return;
    auto engine = load_engine(o);
    double wall = 0;
    uint64_t generated = 0;
    std::vector<std::vector<TokenId>> toks;
    for (size_t p = 0; p < prompts.size(); ++p) {
        std::vector<Submission> subs;
        subs.push_back(tokens_submission(prompts[p], 1, temperature, gen, 500 + p, 0));
        Run r = run_jobs(*engine, std::move(subs));
        if (!r.ok) {
            res->ok = false;
            res->error = r.error;
            return;
        }
        wall += r.wall;
        generated += r.generated();
        toks.push_back(r.completions[0].samples[0].tokens);
    }
    const EngineStats st = engine->stats();
    if (first) {
        res->accept = st.draft_acceptance_rate();
        res->per_pass = st.tokens_per_full_pass();
        res->generated = generated;
        res->tokens = toks;
    } else if (toks != res->tokens) {
        res->ok = false;
        res->error = "the tokens differ between rounds of the same configuration";
        return;
    }
    res->tps = std::max(res->tps, double(generated) / wall);
}

// A cross-check through the model directly (not the engine): along plain greedy
// decoding's tokens, how often the E-layer exit's argmax equals the full model's, i.e.
// the chance that a greedy draft is kept once it is reached. Also counts the positions
// where the full model's argmax is not the engine's greedy token (should be none: the
// forward pass is batch invariant).
struct Agreement {
    double rate = 0;
    int positions = 0, engine_mismatches = 0;
};
Agreement exit_agreement(const std::string& path, int threads, const std::vector<std::vector<TokenId>>& prompts,
                         const std::vector<std::vector<TokenId>>& gens, int E) {
    Agreement a;
    ModelOptions mo;
    mo.n_threads = threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()));
    auto m = Model::load(path, mo);
    if (!m.ok()) return a;
    const Model& model = **m;
    const int V = model.n_vocab();
    int agree = 0;
    for (size_t p = 0; p < prompts.size() && p < gens.size(); ++p) {
        if (gens[p].empty()) continue;
        std::vector<TokenId> seq = prompts[p];
        seq.insert(seq.end(), gens[p].begin(), gens[p].end() - 1);
        const int n = int(seq.size()), first = int(prompts[p].size()) - 1, n_out = n - first;
        std::vector<float> full(size_t(n_out) * V), early(size_t(n_out) * V);
        auto pool = model.new_kv_pool(16, n / 16 + 2);
        for (int pass = 0; pass < 2; ++pass) {
            KvSequence kv(pool.get());
            BatchItem it;
            it.kv = &kv;
            it.tokens = seq.data();
            it.n = n;
            it.n_logits = n_out;
            it.logits = (pass ? early : full).data();
            if (!model.forward_batch(&it, 1, pass ? E : 0).ok()) return a;
        }
        for (int i = 0; i < n_out; ++i) {
            const int32_t f = argmax(&full[size_t(i) * V], V), e = argmax(&early[size_t(i) * V], V);
            agree += f == e;
            a.engine_mismatches += f != gens[p][size_t(i)];
            ++a.positions;
        }
    }
    a.rate = a.positions ? double(agree) / a.positions : 0;
    return a;
}

void warn_mismatches(const std::map<int, Agreement>& agreement) {
    for (auto& [E, a] : agreement)
        if (a.engine_mismatches > 0) {
            md(fmt("\n**Warning:** at %d of %d positions the model's full-pass argmax (Model::forward_batch over the whole "
                   "sequence) is not the engine's greedy token: the engine's output is not batch invariant here.\n\n",
                   a.engine_mismatches, a.positions));
            return;
        }
}

// configs: (E, k) pairs, E = 0 for plain decoding. Rounds are the outer loop, so load
// from elsewhere on the machine spreads over every configuration alike.
std::vector<SpecResult> run_spec_all(const EngineOptions& base, const std::vector<std::pair<int, int>>& configs,
                                     const std::vector<std::vector<TokenId>>& prompts, float temperature, int gen,
                                     int rounds, const std::string& label) {
    std::vector<SpecResult> res(configs.size());
    for (int round = 0; round < rounds; ++round) {
        progress(fmt("%s: round %d of %d (%zu configurations)", label.c_str(), round + 1, rounds, configs.size()));
        for (size_t i = 0; i < configs.size(); ++i) {
            EngineOptions o = base;
            o.exit_layer = configs[i].first;
            o.draft_tokens = configs[i].second;
            run_spec_round(o, prompts, temperature, gen, &res[i], round == 0);
        }
    }
    return res;
}

void section_c(const Options& opt, const std::string& model, int n_normal, int n_layer) {
    const int prompt_len = 32, n_prompts = 2;
    md("\n## c. Self-speculative decoding (LayerSkip) on a synthetic early-predicting model\n\n");
    md(fmt("**The model is synthetic** (TinyLlamaShape::late_layer_scale, engine/model_maker.hpp): the same shape "
           "and random weights as above, but layers >= %d have their attention-output and FFN-down matrices scaled by "
           "%g, so they change the residual stream little and an early exit at E >= %d agrees with the full model most "
           "of the time. Real models are not built like this; section d measures a trained one. Greedy "
           "(temperature 0), batch 1: %d prompts of %d tokens, one after the other, %d tokens each. tokens/s = "
           "generated / wall time, best of %d rounds (a fresh engine per run; the rounds go over every "
           "configuration in turn). acceptance = EngineStats::draft_acceptance_rate() (drafts kept / drafted); "
           "tokens/full pass = EngineStats::tokens_per_full_pass() (generated tokens / passes through all layers; "
           "plain decoding: slightly above 1, the prefill yields each sample's first token); identical = the "
           "generated token ids equal plain decoding's.\n\n",
           opt.late_from, double(opt.late_scale), opt.late_from, n_prompts, prompt_len, opt.spec_gen, opt.rounds));
    std::vector<std::vector<TokenId>> prompts;
    for (int p = 0; p < n_prompts; ++p) prompts.push_back(random_prompt(prompt_len, n_normal, 9000 + uint64_t(p)));
    EngineOptions o = base_options(opt, model, prompt_len + opt.spec_gen + 16);
    std::vector<int> exits;
    for (int E : {1, 2, 4, 6})
        if (E < n_layer) exits.push_back(E);
    if (opt.quick) exits = {1, std::min(2, n_layer - 1)};
    const std::vector<int> ks = opt.quick ? std::vector<int>{2, 4} : std::vector<int>{1, 2, 4, 8};
    std::vector<std::pair<int, int>> configs{{0, 0}};
    for (int E : exits)
        for (int k : ks) configs.push_back({E, k});
    const std::vector<SpecResult> res = run_spec_all(o, configs, prompts, 0.0f, opt.spec_gen, opt.rounds, "c");
    const SpecResult& plain = res[0];
    if (!plain.ok) {
        md("plain decoding failed: " + plain.error + "\n");
        return;
    }
    md(fmt("Plain decoding: **%.1f tokens/s** (%llu tokens, %.3f tokens per full pass). \"exit top-1 agreement\": a "
           "cross-check through Model::forward_batch directly, not the engine: along plain decoding's tokens, how "
           "often the E-layer exit's argmax is the full model's (the chance a greedy draft is kept once reached; "
           "with agreement a and k drafts, expect acceptance (a + a^2 + ... + a^k) / k).\n\n",
           plain.tps, (unsigned long long)plain.generated, plain.per_pass));
    std::map<int, Agreement> agreement;
    for (int E : exits) agreement[E] = exit_agreement(model, opt.threads, prompts, plain.tokens, E);
    warn_mismatches(agreement);
    md("| E (of " + std::to_string(n_layer) +
       ") | k | tokens/s | speed-up | acceptance | tokens/full pass | exit top-1 agreement | identical to plain |\n");
    md("|---:|---:|---:|---:|---:|---:|---:|:---:|\n");
    for (size_t i = 1; i < configs.size(); ++i) {
        const auto [E, k] = configs[i];
        const SpecResult& r = res[i];
        if (!r.ok) {
            md(fmt("| %d | %d | failed: %s |\n", E, k, r.error.c_str()));
            continue;
        }
        const bool same = r.tokens == plain.tokens;
        md(fmt("| %d | %d | %.1f | %.2fx | %.1f%% | %.2f | %.1f%% | %s |\n", E, k, r.tps, r.tps / plain.tps,
               100 * r.accept, r.per_pass, 100 * agreement[E].rate, same_str(same).c_str()));
        g_json.section("speculative").push_back(
            fmt("{\"E\": %d, \"k\": %d, \"tps\": %s, \"plain_tps\": %s, \"speedup\": %s, \"acceptance\": %s, "
                "\"per_pass\": %s, \"identical\": %s}",
                E, k, jnum(r.tps).c_str(), jnum(plain.tps).c_str(), jnum(r.tps / plain.tps).c_str(),
                jnum(r.accept).c_str(), jnum(r.per_pass).c_str(), same ? "true" : "false"));
    }
}

bool read_file(const std::string& path, std::string* out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::ostringstream ss;
    ss << in.rdbuf();
    *out = ss.str();
    return true;
}

void section_d(const Options& opt, const fs::path& tmp) {
    md("\n## d. Self-speculative acceptance on trained weights (stories260K)\n\n");
    const std::string bin_path = opt.fixtures + "/models/stories260K.bin";
    std::string bin;
    if (!read_file(bin_path, &bin)) {
        md("Skipped: " + bin_path + " is missing (the shared fixtures, see --fixtures).\n");
        progress("d: skipped, no " + bin_path);
        return;
    }
    GgufWriter w;
    if (Status st = llama2c_to_gguf(reinterpret_cast<const uint8_t*>(bin.data()), bin.size(), GgmlType::F32, &w); !st.ok()) {
        md("Skipped: converting " + bin_path + " failed: " + st.message() + "\n");
        return;
    }
    const std::string model = (tmp / "stories260K.gguf").string();
    if (Status st = w.write_file(model); !st.ok()) {
        md("Skipped: " + st.message() + "\n");
        return;
    }
    Llama2cConfig cfg;
    (void)llama2c_read_config(reinterpret_cast<const uint8_t*>(bin.data()), bin.size(), &cfg);
    const int n_layer = cfg.n_layers, gen = opt.quick ? 64 : 128;
    EngineOptions o = base_options(opt, model, 0);  // 0: the training context (512)

    // Story prompts. The checkpoint's own 512-token tokenizer is not available (fixtures
    // README), so text cannot be encoded; the prompts are the model's own story openings:
    // BOS, then the first 8 tokens it samples from BOS at temperature 1 (seeds 1..4), and
    // BOS alone.
    const TokenId bos = 1;
    std::vector<std::vector<TokenId>> prompts{{bos}};
    {
        auto engine = load_engine(o);
        std::vector<Submission> subs;
        for (uint64_t seed = 1; seed <= (opt.quick ? 2u : 4u); ++seed)
            subs.push_back(tokens_submission({bos}, 1, 1.0f, 8, seed, 0));
        Run r = run_jobs(*engine, std::move(subs));
        if (!r.ok) {
            md("Skipped: making the prompts failed: " + r.error + "\n");
            return;
        }
        for (auto& c : r.completions) {
            std::vector<TokenId> p{bos};
            p.insert(p.end(), c.samples[0].tokens.begin(), c.samples[0].tokens.end());
            prompts.push_back(p);
        }
    }
    md(fmt("stories260K (llama2.c; dim %d, %d layers, %d heads, vocab %d) converted to GGUF (F32). Its 512-token "
           "tokenizer is not available (shared fixtures README), so the prompts are token ids: BOS alone and BOS "
           "followed by the first 8 tokens the model itself samples from BOS at temperature 1 with %zu seeds — its own "
           "story openings (\"Once upon a time ...\" in TinyStories). %zu prompts, %d tokens each, batch 1. Greedy: "
           "\"identical\" compares with plain greedy decoding; temperature 1: speculative sampling keeps the "
           "distribution, not the draws, so tokens differ from plain sampling by design. speed-up = tokens/s over "
           "plain decoding's at the same temperature (best of %d rounds each). At this size (dim 64, ~0.3 ms per "
           "token) the engine's per-pass overhead dominates and a few milliseconds of scheduling noise move the "
           "figure a lot, so it says little about a larger model; acceptance and tokens per full pass are the "
           "transferable figures.\n\n",
           cfg.dim, cfg.n_layers, cfg.n_heads, cfg.vocab_size, prompts.size() - 1, prompts.size(), gen, opt.rounds));
    md("\"exit top-1 agreement\" (greedy rows) is the model-level cross-check of section c: along plain greedy "
       "decoding's tokens, how often the E-layer exit's argmax is the full model's.\n\n");
    md("| temperature | E (of " + std::to_string(n_layer) +
       ") | k | acceptance | tokens/full pass | exit top-1 agreement | speed-up | identical to plain |\n");
    md("|---:|---:|---:|---:|---:|---:|---:|:---:|\n");
    std::vector<std::pair<int, int>> configs{{0, 0}};
    for (int E = 1; E < n_layer; ++E)
        for (int k : {2, 4}) configs.push_back({E, k});
    std::vector<double> plain_tps;
    for (float temp : {0.0f, 1.0f}) {
        const std::vector<SpecResult> res =
            run_spec_all(o, configs, prompts, temp, gen, opt.rounds, fmt("d: temperature %g", double(temp)));
        const SpecResult& plain = res[0];
        if (!plain.ok) {
            md("plain decoding failed: " + plain.error + "\n");
            return;
        }
        plain_tps.push_back(plain.tps);
        std::map<int, Agreement> agreement;
        if (temp == 0)
            for (int E = 1; E < n_layer; ++E) agreement[E] = exit_agreement(model, opt.threads, prompts, plain.tokens, E);
        warn_mismatches(agreement);
        for (size_t i = 1; i < configs.size(); ++i) {
            const auto [E, k] = configs[i];
            const SpecResult& r = res[i];
            if (!r.ok) {
                md(fmt("| %g | %d | %d | failed: %s |\n", double(temp), E, k, r.error.c_str()));
                continue;
            }
            const std::string same = temp > 0 ? "n/a" : same_str(r.tokens == plain.tokens);
            const std::string agree = temp > 0 ? "n/a" : fmt("%.1f%%", 100 * agreement[E].rate);
            md(fmt("| %g | %d | %d | %.1f%% | %.2f | %s | %.2fx | %s |\n", double(temp), E, k, 100 * r.accept,
                   r.per_pass, agree.c_str(), r.tps / plain.tps, same.c_str()));
            g_json.section("stories").push_back(fmt("{\"temperature\": %g, \"E\": %d, \"k\": %d, \"acceptance\": %s, "
                                                    "\"per_pass\": %s, \"speedup\": %s}",
                                                    double(temp), E, k, jnum(r.accept).c_str(), jnum(r.per_pass).c_str(),
                                                    jnum(r.tps / plain.tps).c_str()));
        }
    }
    if (plain_tps.size() == 2)
        md(fmt("\nPlain decoding: %.0f tokens/s greedy, %.0f tokens/s at temperature 1.\n", plain_tps[0], plain_tps[1]));
}

std::string loadavg() {
    std::ifstream in("/proc/loadavg");
    double a = 0, b = 0, c = 0;
    if (!(in >> a >> b >> c)) return "n/a";
    return fmt("%.2f, %.2f, %.2f", a, b, c);
}

int usage() {
    std::fprintf(stderr,
                 "usage: engine_batching_bench [--quick] [--sections abcd] [--threads N] [--rounds R] [--prompt 256]\n"
                 "           [--gen 64] [--max-n 64] [--max-b 64] [--spec-gen 128] [--late-scale 0.05] [--late-from 2]\n"
                 "           [--fixtures DIR] [--out FILE.md] [--json FILE.json]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    bool sizes_given[4] = {};
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        const char* v = nullptr;
        auto num = [&](int* dst) { return (v = val()) && (*dst = std::atoi(v), true); };
        bool ok = true;
        if (a == "--quick") opt.quick = true;
        else if (a == "--sections") ok = (v = val()) && (opt.sections = v, true);
        else if (a == "--threads") ok = num(&opt.threads);
        else if (a == "--rounds") ok = num(&opt.rounds);
        else if (a == "--prompt") ok = num(&opt.prompt);
        else if (a == "--gen") ok = num(&opt.gen), sizes_given[0] = true;
        else if (a == "--max-n") ok = num(&opt.max_n), sizes_given[1] = true;
        else if (a == "--max-b") ok = num(&opt.max_b), sizes_given[2] = true;
        else if (a == "--spec-gen") ok = num(&opt.spec_gen), sizes_given[3] = true;
        else if (a == "--late-scale") ok = (v = val()) && (opt.late_scale = std::strtof(v, nullptr), true);
        else if (a == "--late-from") ok = num(&opt.late_from);
        else if (a == "--fixtures") ok = (v = val()) && (opt.fixtures = v, true);
        else if (a == "--out") ok = (v = val()) && (opt.out_md = v, true);
        else if (a == "--json") ok = (v = val()) && (opt.out_json = v, true);
        else ok = false;
        if (!ok) return usage();
    }
    if (opt.quick) {  // under a minute on 2 cores
        if (!sizes_given[0]) opt.gen = 32;
        if (!sizes_given[1]) opt.max_n = 8;
        if (!sizes_given[2]) opt.max_b = 8;
        if (!sizes_given[3]) opt.spec_gen = 48;
    }
    if (opt.rounds <= 0) opt.rounds = opt.quick ? 1 : 3;
    if (opt.rounds_a <= 0) opt.rounds_a = opt.quick ? 1 : std::min(2, opt.rounds);
    if (opt.prompt < 1 || opt.gen < 1 || opt.max_n < 1 || opt.max_n > 128 || opt.max_b < 1 || opt.spec_gen < 1)
        return usage();
    const auto t_start = Clock::now();

    std::error_code ec;
    fs::path tmp = fs::temp_directory_path() / ("reprise-batching-bench-" + std::to_string(::getpid()));
    fs::create_directories(tmp, ec);
    if (ec) {
        std::fprintf(stderr, "engine_batching_bench: %s: %s\n", tmp.c_str(), ec.message().c_str());
        return 1;
    }
    struct Cleanup {
        fs::path p;
        ~Cleanup() {
            std::error_code e;
            fs::remove_all(p, e);
        }
    } cleanup{tmp};

    // The model: ~25M parameters of layers (Q8_0) over the built-in vocabulary.
    TinyLlamaShape shape;
    shape.n_embd = 512;
    shape.n_ff = 1536;
    shape.n_layer = 8;
    shape.n_head = 8;
    shape.n_head_kv = 4;
    shape.n_ctx = 1024;
    shape.type = GgmlType::Q8_0;
    shape.seed = 1;
    shape.name = "batching-bench";
    const std::string model = (tmp / "model.gguf").string();
    if (Status st = write_model(shape, model); !st.ok()) {
        std::fprintf(stderr, "engine_batching_bench: %s\n", st.message().c_str());
        return 1;
    }
    TinyLlamaShape late = shape;
    late.late_layer_scale = opt.late_scale;
    late.late_from = uint32_t(opt.late_from);
    late.name = "batching-bench-early-exit";
    const std::string late_model = (tmp / "early_exit.gguf").string();
    if (Status st = write_model(late, late_model); !st.ok()) {
        std::fprintf(stderr, "engine_batching_bench: %s\n", st.message().c_str());
        return 1;
    }
    auto probe = load_engine(base_options(opt, model, 512));
    const EngineInfo info = probe->info();
    const EngineStats st0 = probe->stats();
    probe.reset();
    const int n_normal = info.n_vocab - 3;  // the built-in vocabulary ends with its 3 control tokens

    std::string cmd = "engine_batching_bench";
    for (int i = 1; i < argc; ++i) cmd += std::string(" ") + argv[i];
    const std::string load_before = loadavg();
    md("# Engine: paged KV cache, continuous batching, self-speculative decoding (CPU)\n\n");
    md(fmt("Measured by `bench/engine/batching.cpp` (`make bench-batching`; this run: `%s`) through the engine's API "
           "(Engine::submit, EngineStats). Machine: %u logical CPUs (shared with other work: figures vary run to run), "
           "engine threads: %d. Model (sections a-c): generated, **random weights**, Llama shape dim %u, FFN %u, %u "
           "layers, %u heads over %u KV heads, %s, the built-in %d-token vocabulary: %.1fM parameters. KV cache: F32, "
           "%llu KB per token, blocks of %d tokens, kv_cache_mb 1024, max_batch_tokens 512, max_sequences 64.\n",
           cmd.c_str(), std::thread::hardware_concurrency(), info.threads, shape.n_embd, shape.n_ff, shape.n_layer,
           shape.n_head, shape.n_head_kv, info.weight_type.c_str(), info.n_vocab, double(info.n_params) / 1e6,
           (unsigned long long)(st0.kv_bytes_per_token / 1024), st0.kv_block_size));

    if (opt.sections.find('a') != std::string::npos) section_a(opt, model, n_normal);
    if (opt.sections.find('b') != std::string::npos) section_b(opt, model, n_normal);
    if (opt.sections.find('c') != std::string::npos) section_c(opt, late_model, n_normal, int(shape.n_layer));
    if (opt.sections.find('d') != std::string::npos) section_d(opt, tmp);

    const double secs = std::chrono::duration<double>(Clock::now() - t_start).count();
    md(fmt("\nWhole run: %.0f s. Load average (1, 5, 15 min) at the start: %s; at the end: %s (other work on the "
           "machine competes for the same cores).\n",
           secs, load_before.c_str(), loadavg().c_str()));
    if (!opt.out_md.empty()) {
        // Hand-written notes below a "<!-- notes -->" line of the previous file are kept
        // (as bench/engine/run.mjs does).
        std::string old, notes;
        const std::string mark = "<!-- notes -->";
        if (read_file(opt.out_md, &old))
            if (size_t at = old.find(mark); at != std::string::npos) notes = "\n" + old.substr(at);
        std::ofstream out(opt.out_md, std::ios::binary);
        out << g_md << notes;
        if (!out) std::fprintf(stderr, "engine_batching_bench: cannot write %s\n", opt.out_md.c_str());
    }
    if (!opt.out_json.empty()) {
        std::ofstream out(opt.out_json, std::ios::binary);
        out << g_json.dump(fmt("{\"cpus\": %u, \"threads\": %d, \"n_layer\": %u, \"late_from\": %d, \"late_scale\": %s, "
                               "\"prompt\": %d, \"gen\": %d, \"spec_gen\": %d}",
                               std::thread::hardware_concurrency(), info.threads, shape.n_layer, opt.late_from,
                               jnum(opt.late_scale).c_str(), opt.prompt, opt.gen, opt.spec_gen));
        if (!out) std::fprintf(stderr, "engine_batching_bench: cannot write %s\n", opt.out_json.c_str());
    }
    return 0;
}
