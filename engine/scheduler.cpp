#include "engine/scheduler.hpp"

#include <algorithm>
#include <chrono>

#include "engine/speculative.hpp"
#include "engine/utf8_stream.hpp"

namespace reprise::engine {

// One sample while it decodes. tokens = prompt + generated; while the sample runs,
// its last token is not yet in the KV cache (the next step feeds it).
struct Scheduler::Seq {
    KvSequence kv;
    Sampler sampler;
    StopMatcher stop;
    Utf8Stream utf8;
    SampleResult result;
    std::vector<TokenId> tokens;
    std::vector<float> logits;  // after the last fed token
    bool done = false;
    // Speculation scratch, valid within one step.
    std::vector<Draft> drafts;
    std::vector<float> hidden;        // (k+1) * n_embd: the residual stream entering layer E
    std::vector<float> draft_logits;  // n_vocab
    std::vector<float> verify_logits; // (k+1) * n_vocab

    Seq(KvBlockPool* pool, const SamplerParams& p, uint64_t key, uint64_t index, std::vector<std::string> stops)
        : kv(pool), sampler(p, key, index), stop(std::move(stops)) {}
    int pending() const { return int(tokens.size()) - kv.size(); }
};

struct Scheduler::Job {
    uint64_t id = 0;       // the energy split's name for it
    Submission submission;
    Callbacks callbacks;
    std::vector<TokenId> prompt;
    int max_new = 0;       // completion tokens per sample, within the context
    bool started = false;  // samples exist (the prompt was prefilled once)
    bool prompt_ready = false;  // the prompt's K/V are in place (false again after a preemption)
    KvSequence prompt_kv;  // the prompt's own sequence until the samples fork from it
    std::vector<float> prompt_logits;
    std::vector<std::unique_ptr<Seq>> seqs;

    explicit Job(KvBlockPool* pool) : prompt_kv(pool) {}
    bool prefilling() const { return !prompt_ready; }
};

// One entry of a step's batch.
struct Scheduler::Planned {
    enum class Kind { prefill, decode, verify } kind;
    Job* job;
    Seq* seq;  // null for prefill
    int pos0, n;
};

namespace {
using Clock = std::chrono::steady_clock;

double seconds_now() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// Work units (the energy split's weights): DESIGN.md section 5.
constexpr double kPrefillUnit = 0.2;
}

Scheduler::Scheduler(const Model& model, const Tokenizer& tokenizer, std::vector<TokenId> eog, const SchedulerOptions& o)
    : model_(model), tokenizer_(tokenizer), end_of_generation_(std::move(eog)), options_(o) {
    options_.block_size = std::max(1, options_.block_size);
    options_.max_sequences = std::max(1, options_.max_sequences);
    options_.max_batch_tokens = std::max(1, options_.max_batch_tokens);
    const int per_seq = (options_.n_ctx + options_.block_size - 1) / options_.block_size;
    if (options_.n_blocks <= 0) options_.n_blocks = per_seq * options_.max_sequences;
    // At least one sequence of the full context, so any admitted prompt can finish.
    options_.n_blocks = std::max(options_.n_blocks, per_seq + 1);
    const int L = model_.n_layer();
    const bool exit_ok = options_.exit_layer > 0 && options_.exit_layer < L;
    speculate_ = exit_ok && !options_.early_exit_only && options_.draft_tokens > 0;
    layer_end_ = exit_ok && options_.early_exit_only ? options_.exit_layer : L;
    pool_ = model_.new_kv_pool(options_.block_size, options_.n_blocks);
}

Scheduler::~Scheduler() = default;

void Scheduler::add(Submission s, Callbacks cb, std::vector<TokenId> prompt) {
    auto job = std::make_unique<Job>(pool_.get());
    job->id = next_job_id_++;
    const int room = options_.n_ctx - int(prompt.size());
    job->max_new = s.max_tokens < 0 ? room : std::min(s.max_tokens, room);
    job->submission = std::move(s);
    job->callbacks = std::move(cb);
    job->prompt = std::move(prompt);
    waiting_.push_back(std::move(job));
}

int Scheduler::sequences_of(const Job& job) const {
    if (!job.started) return job.submission.n;
    int n = 0;
    for (auto& s : job.seqs) n += s->done ? 0 : 1;
    return n;
}

int Scheduler::running_sequences() const {
    int n = 0;
    for (auto& j : running_) n += sequences_of(*j);
    return n;
}

void Scheduler::fail(Job& job, EngineErrc code, const std::string& message) {
    const EngineError error{code, message};
    ++counters_.jobs_failed;
    if (code == EngineErrc::cancelled) ++counters_.jobs_cancelled;
    job.prompt_kv.clear();
    job.seqs.clear();
    if (energy_counter_) energy_.forget(job.id);
    if (job.callbacks.on_done) job.callbacks.on_done(nullptr, &error);
}

void Scheduler::fail_all(const EngineError& error) {
    auto fail_each = [&](auto& jobs) {
        for (auto& j : jobs) fail(*j, error.code, error.message);
        jobs.clear();
    };
    fail_each(running_);
    fail_each(waiting_);
}

void Scheduler::cancel_abandoned() {
    auto cancelled = [](const std::unique_ptr<Job>& j) {
        return j->submission.cancelled && j->submission.cancelled->load(std::memory_order_relaxed);
    };
    auto drop = [&](auto& jobs) {
        for (auto it = jobs.begin(); it != jobs.end();) {
            if (cancelled(*it)) {
                fail(**it, EngineErrc::cancelled, "the request was cancelled (every client disconnected)");
                it = jobs.erase(it);
            } else {
                ++it;
            }
        }
    };
    drop(running_);
    drop(waiting_);
}

void Scheduler::admit() {
    int seqs = running_sequences();
    while (!waiting_.empty()) {
        Job& job = *waiting_.front();
        const int n = sequences_of(job);
        const int bs = options_.block_size;
        const int need = (int(job.prompt.size()) + bs - 1) / bs + n;  // the prompt, and a block per sample to grow
        if (need > pool_->n_blocks()) {
            fail(job, EngineErrc::overloaded,
                 "the engine's KV cache (" + std::to_string(pool_->n_blocks()) + " blocks of " + std::to_string(bs) +
                     " tokens) cannot hold " + std::to_string(n) + " samples of this prompt; lower n or raise kv_cache_mb");
            waiting_.pop_front();
            continue;
        }
        if (!running_.empty() && (seqs + n > options_.max_sequences || need > pool_->free_blocks())) break;
        seqs += n;
        running_.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
    }
}

void Scheduler::preempt(Job& job) {
    ++counters_.preemptions;
    job.prompt_ready = false;
    job.prompt_kv.clear();
    for (auto& s : job.seqs) s->kv.clear();
}

std::vector<Scheduler::Planned> Scheduler::plan() {
    for (;;) {
        std::vector<Planned> out;
        int budget = options_.max_batch_tokens;
        const int k = options_.draft_tokens;
        // Decoding samples first: they hold KV memory and a client is waiting on each token.
        for (auto& jp : running_) {
            Job& job = *jp;
            if (job.prefilling()) continue;
            for (auto& sp : job.seqs) {
                Seq& s = *sp;
                if (s.done) continue;
                const int pending = s.pending();
                const int remaining = job.max_new - s.result.completion_tokens;
                const int k_eff = std::min(k, remaining - 1);
                if (speculate_ && pending == 1 && k_eff >= 1) {
                    if (k_eff + 1 > budget && !out.empty()) continue;
                    out.push_back({Planned::Kind::verify, &job, &s, s.kv.size(), k_eff + 1});
                    budget -= k_eff + 1;
                } else {
                    // pending > 1 only after a preemption: the generated tokens but the last
                    // are recomputed (in chunks, no logits), so the last one then takes the
                    // same decode or verification step, with the same random draws, as it
                    // would have without the preemption.
                    const int want = pending > 1 ? pending - 1 : 1;
                    const int n = std::min(want, std::max(budget, out.empty() ? 1 : 0));
                    if (n <= 0) continue;
                    out.push_back({Planned::Kind::decode, &job, &s, s.kv.size(), n});
                    budget -= n;
                }
            }
        }
        for (auto& jp : running_) {
            Job& job = *jp;
            if (!job.prefilling() || (budget <= 0 && !out.empty())) continue;
            const int done = job.prompt_kv.size();
            const int n = std::min(int(job.prompt.size()) - done, std::max(budget, 1));
            out.push_back({Planned::Kind::prefill, &job, nullptr, done, n});
            budget -= n;
        }
        int need = 0;
        for (auto& p : out) need += (p.seq ? p.seq->kv : p.job->prompt_kv).blocks_needed(p.pos0, p.n);
        if (need <= pool_->free_blocks()) return out;
        // Short of blocks: the most recently admitted job steps back and is recomputed later.
        std::unique_ptr<Job> last = std::move(running_.back());
        running_.pop_back();
        if (running_.empty()) {
            fail(*last, EngineErrc::overloaded, "the engine's KV cache cannot hold this request's samples; lower n or raise kv_cache_mb");
            continue;
        }
        preempt(*last);
        waiting_.push_front(std::move(last));
    }
}

Status Scheduler::draft(std::vector<Planned>& plan) {
    const int E = int(model_.hparams().n_embd), V = model_.n_vocab();
    std::vector<Seq*> specs;
    int rounds = 0;
    for (auto& p : plan)
        if (p.kind == Planned::Kind::verify) {
            Seq& s = *p.seq;
            s.drafts.clear();
            s.hidden.resize(size_t(p.n) * E);
            s.draft_logits.resize(size_t(V));
            specs.push_back(&s);
            rounds = std::max(rounds, p.n);
        }
    std::vector<BatchItem> items;
    std::vector<int32_t> inputs(specs.size());
    // Round r feeds the token at position p + r (r = 0: the last sampled token, then
    // the drafts) through layers [0, E); each round but the last drafts the next token.
    for (int r = 0; r < rounds; ++r) {
        items.clear();
        std::vector<Seq*> in_round;
        for (size_t i = 0; i < plan.size(); ++i) {
            const Planned& p = plan[i];
            if (p.kind != Planned::Kind::verify || r >= p.n) continue;
            Seq& s = *p.seq;
            inputs[in_round.size()] = r == 0 ? s.tokens.back() : s.drafts[size_t(r - 1)].token;
            BatchItem it;
            it.kv = &s.kv;
            it.tokens = &inputs[in_round.size()];
            it.n = 1;
            it.pos0 = p.pos0 + r;
            it.hidden_out = s.hidden.data() + size_t(r) * E;
            it.n_logits = r + 1 < p.n ? 1 : 0;
            it.logits = s.draft_logits.data();
            items.push_back(it);
            in_round.push_back(&s);
        }
        if (Status st = model_.forward_batch(items.data(), int(items.size()), options_.exit_layer); !st.ok()) return st;
        for (size_t i = 0; i < items.size(); ++i) {
            if (items[i].n_logits == 0) continue;
            Seq& s = *in_round[i];
            s.drafts.push_back(draft_token(s.sampler.params(), s.draft_logits.data(), V, s.sampler.rng()));
        }
    }
    return Status();
}

void Scheduler::start_samples(Job& job) {
    const int n_prompt = int(job.prompt.size());
    job.prompt_ready = true;
    if (!job.started) {
        job.started = true;
        const uint64_t first = job.submission.first_index ? job.submission.first_index() : 0;
        counters_.prompt_tokens += uint64_t(n_prompt);
        for (int i = 0; i < job.submission.n; ++i) {
            auto s = std::make_unique<Seq>(pool_.get(), job.submission.sampler, job.submission.key_hash, first + uint64_t(i),
                                           job.submission.stop);
            s->kv.fork_from(job.prompt_kv);
            s->tokens = job.prompt;
            job.seqs.push_back(std::move(s));
        }
        job.prompt_kv.clear();  // the samples hold the prompt's blocks now
        for (int i = 0; i < job.submission.n; ++i) {
            Seq& s = *job.seqs[size_t(i)];
            accept_token(job, i, s.sampler.sample(job.prompt_logits.data(), model_.n_vocab()));
        }
        return;
    }
    // Resumed after a preemption: every sample recomputes its own tokens from here.
    for (auto& s : job.seqs)
        if (!s->done) s->kv.fork_from(job.prompt_kv);
    job.prompt_kv.clear();
}

void Scheduler::finish_sample(Job& job, int index, Finish reason) {
    Seq& s = *job.seqs[size_t(index)];
    if (reason != Finish::stop || !s.stop.stopped()) {
        std::string tail = s.stop.feed(s.utf8.flush());
        if (!s.stop.stopped()) tail += s.stop.flush();
        s.result.text += tail;
        if (!tail.empty() && job.callbacks.on_text) job.callbacks.on_text(index, tail);
    }
    s.result.finish = reason;
    s.done = true;
    s.kv.clear();
}

void Scheduler::accept_token(Job& job, int index, TokenId token) {
    Seq& s = *job.seqs[size_t(index)];
    ++s.result.completion_tokens;
    s.result.tokens.push_back(token);
    ++counters_.generated_tokens;
    if (std::find(end_of_generation_.begin(), end_of_generation_.end(), token) != end_of_generation_.end())
        return finish_sample(job, index, Finish::stop);
    std::string text = s.stop.feed(s.utf8.feed(tokenizer_.token_to_piece(token)));
    s.result.text += text;
    if (!text.empty() && job.callbacks.on_text) job.callbacks.on_text(index, text);
    if (s.stop.stopped()) return finish_sample(job, index, Finish::stop);
    if (s.result.completion_tokens >= job.max_new) return finish_sample(job, index, Finish::length);
    s.tokens.push_back(token);
}

void Scheduler::complete_finished() {
    for (auto it = running_.begin(); it != running_.end();) {
        Job& job = **it;
        const bool finished = job.started && !job.prefilling() &&
                              std::all_of(job.seqs.begin(), job.seqs.end(), [](auto& s) { return s->done; });
        if (!finished) {
            ++it;
            continue;
        }
        Completion done;
        done.prompt_tokens = int(job.prompt.size());
        if (energy_counter_) done.energy_j = energy_.finish(job.id);
        for (auto& s : job.seqs) done.samples.push_back(std::move(s->result));
        ++counters_.jobs;
        counters_.samples += uint64_t(job.submission.n);
        if (job.callbacks.on_done) job.callbacks.on_done(&done, nullptr);
        it = running_.erase(it);
    }
}

void Scheduler::measure_energy(EnergyCounter* counter, double min_window_s) {
    energy_counter_ = counter;
    energy_ = EnergySplit(min_window_s);
}

void Scheduler::read_energy() {
    const double t = seconds_now();
    if (!energy_.wants_reading(t)) return;  // the open window is too young to close
    uint64_t mj = 0;
    if (energy_counter_->read_mj(&mj)) energy_.reading(t, mj);
    else energy_.read_failed();
}

void Scheduler::step() {
    step_batch();
    // Idle: the open window ends here, so the time until the next burst is charged to nobody.
    if (energy_counter_ && idle()) energy_.idle();
}

void Scheduler::step_batch() {
    cancel_abandoned();
    admit();
    if (running_.empty()) return;
    std::vector<Planned> plan = this->plan();
    if (plan.empty()) return;
    // A burst's first pass opens a window (drafting included).
    if (energy_counter_ && !energy_.window_open()) read_energy();
    const auto start = Clock::now();
    const int V = model_.n_vocab();
    auto fail_batch = [&](const std::string& message) {
        for (auto& jp : running_) fail(*jp, EngineErrc::internal, message);
        running_.clear();
    };
    if (speculate_)
        if (Status st = draft(plan); !st.ok()) return fail_batch("drafting failed: " + st.message());

    std::vector<BatchItem> items;
    items.reserve(plan.size());
    int prefill_tokens = 0, decode_tokens = 0;
    for (auto& p : plan) {
        BatchItem it;
        it.n = p.n;
        it.pos0 = p.pos0;
        if (p.kind == Planned::Kind::prefill) {
            Job& job = *p.job;
            it.kv = &job.prompt_kv;
            it.tokens = job.prompt.data() + p.pos0;
            const bool last = p.pos0 + p.n == int(job.prompt.size());
            it.n_logits = last && !job.started ? 1 : 0;
            job.prompt_logits.resize(size_t(V));
            it.logits = job.prompt_logits.data();
            prefill_tokens += p.n;
        } else if (p.kind == Planned::Kind::decode) {
            Seq& s = *p.seq;
            it.kv = &s.kv;
            it.tokens = s.tokens.data() + p.pos0;
            it.n_logits = p.pos0 + p.n == int(s.tokens.size()) ? 1 : 0;  // 0: a recomputation chunk
            s.logits.resize(size_t(V));
            it.logits = s.logits.data();
            (p.n == 1 ? decode_tokens : prefill_tokens) += p.n;
        } else {
            Seq& s = *p.seq;
            it.kv = &s.kv;
            it.hidden = s.hidden.data();
            it.layer_begin = options_.exit_layer;
            it.n_logits = p.n;
            s.verify_logits.resize(size_t(p.n) * V);
            it.logits = s.verify_logits.data();
            decode_tokens += p.n;
        }
        items.push_back(it);
    }
    if (Status st = model_.forward_batch(items.data(), int(items.size()), layer_end_); !st.ok())
        return fail_batch("forward pass failed: " + st.message());
    ++counters_.steps;
    if (energy_counter_) {
        // Each job's work in this step, then a reading: a job finishing below already
        // has its share of a window this step closed.
        for (auto& p : plan) {
            const bool prefill_like = p.kind == Planned::Kind::prefill || (p.kind == Planned::Kind::decode && p.n > 1);
            energy_.add(p.job->id, prefill_like ? kPrefillUnit * p.n : double(p.n));
        }
        read_energy();
    }

    for (size_t i = 0; i < plan.size(); ++i) {
        Planned& p = plan[i];
        Job& job = *p.job;
        if (p.kind == Planned::Kind::prefill) {
            job.prompt_kv.set_size(p.pos0 + p.n);
            if (p.pos0 + p.n == int(job.prompt.size())) start_samples(job);
            continue;
        }
        Seq& s = *p.seq;
        const int index = int(std::find_if(job.seqs.begin(), job.seqs.end(), [&](auto& x) { return x.get() == &s; }) -
                              job.seqs.begin());
        if (p.kind == Planned::Kind::decode) {
            s.kv.set_size(p.pos0 + p.n);
            if (items[i].n_logits == 0) continue;  // a recomputation chunk
            if (layer_end_ == model_.n_layer()) ++counters_.full_passes;
            accept_token(job, index, s.sampler.sample(s.logits.data(), V));
            continue;
        }
        // Verification: keep the longest agreeing prefix of the drafts, then the full model's token.
        const Verdict v = verify_drafts(s.sampler.params(), s.drafts, s.verify_logits.data(), V, s.sampler.rng());
        ++counters_.full_passes;
        counters_.drafted += s.drafts.size();
        counters_.accepted += uint64_t(v.accepted);
        s.kv.set_size(p.pos0 + 1 + v.accepted);  // the last sampled token and the kept drafts
        for (int d = 0; d < v.accepted && !s.done; ++d) accept_token(job, index, s.drafts[size_t(d)].token);
        if (!s.done) accept_token(job, index, v.next);
    }
    complete_finished();

    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    const int total = std::max(1, prefill_tokens + decode_tokens);
    counters_.prefill_seconds += secs * prefill_tokens / total;
    counters_.decode_seconds += secs * decode_tokens / total;
}

}  // namespace reprise::engine
