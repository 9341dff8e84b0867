#pragma once
// Continuous batching over the paged KV cache (as Orca and vLLM): requests join and
// leave the running batch at every step, and each step is one forward pass over
// every running sequence's next tokens together.
//
// A step:
// 1. drops cancelled jobs (their blocks go back to the pool);
// 2. admits waiting jobs, first come first served, while the running samples stay
//    within max_sequences and the pool has room for the prompt plus one block per
//    sample;
// 3. plans the batch under a token budget (max_batch_tokens): decoding samples
//    first (1 token, or the k+1 of a speculative verification), then prompt chunks,
//    so a long prompt is prefilled over several steps without stalling the others;
// 4. if the KV pool cannot hold what the plan writes, preempts the most recently
//    admitted job: its blocks are freed and it waits at the head of the queue, to be
//    recomputed later from its tokens (vLLM's recompute preemption: cheaper than
//    swapping on a CPU, and exact because the forward pass is batch invariant);
// 5. drafts with the first E layers for the samples that speculate, runs the one
//    forward pass, samples, verifies drafts and reports text and finished jobs.
//
// A job prefills its prompt once into its own sequence; its n samples then fork
// from it and share the prompt's blocks (copy-on-write of the partly filled last
// block). Sample i's tokens depend only on the model, the prompt, its seed and the
// speculation settings, never on the batch it ran in, preemptions or other jobs.
//
// Single-threaded: the engine's worker thread owns it; callbacks run on that thread.
// Device-agnostic: it sees the model only through Model::forward_batch, so a CUDA
// model runs under the same scheduler.
//
// Measured energy (measure_energy, energy_split.hpp): the counter is read before the
// first pass of a burst and after passes, and its joules are split over the jobs by
// the work units each did: 0.2 per prompt token prefilled (and per token recomputed
// after a preemption, in chunks like a prompt), 1 per token decoded (DESIGN.md
// section 5). A speculative round over k+1 positions counts k+1 units, like k+1
// decode tokens: its drafting passes through the first E layers and its verification
// through the other L-E layers add up to one pass through every layer per position
// (the output head's extra logits are not counted). Each Completion carries its job's
// share (Completion::energy_j), set before on_done.
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "engine/energy_split.hpp"
#include "engine/job.hpp"
#include "engine/kv_cache.hpp"
#include "engine/model.hpp"
#include "engine/nvml_energy.hpp"
#include "engine/tokenizer.hpp"

namespace reprise::engine {

struct SchedulerOptions {
    int n_ctx = 4096;             // positions per sequence (prompt + completion)
    int block_size = 16;          // KV positions per block
    int n_blocks = 0;             // KV pool size; 0 = one full context per possible sequence
    int max_batch_tokens = 512;   // tokens per step (the token budget)
    int max_sequences = 64;       // samples decoding at once
    int exit_layer = 0;           // LayerSkip E: draft with layers [0, E); 0 = off
    int draft_tokens = 4;         // k: drafts verified per full pass
    bool early_exit_only = false; // lossy: every pass stops at E, nothing is verified
};

struct SchedulerCounters {
    uint64_t jobs = 0, jobs_failed = 0, jobs_cancelled = 0, samples = 0;
    uint64_t prompt_tokens = 0, generated_tokens = 0;
    uint64_t steps = 0;           // batched forward passes (drafting passes not counted)
    uint64_t full_passes = 0;     // per sequence: one pass through every layer that yielded tokens
    uint64_t drafted = 0, accepted = 0;
    uint64_t preemptions = 0;
    double prefill_seconds = 0, decode_seconds = 0;  // step time split by token share
};

class Scheduler {
public:
    Scheduler(const Model& model, const Tokenizer& tokenizer, std::vector<TokenId> end_of_generation,
              const SchedulerOptions& options);
    ~Scheduler();
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    // A job whose prompt is tokenized and shorter than the context.
    void add(Submission submission, Callbacks callbacks, std::vector<TokenId> prompt);
    bool idle() const { return waiting_.empty() && running_.empty(); }
    int waiting() const { return int(waiting_.size()); }
    int running_jobs() const { return int(running_.size()); }
    int running_sequences() const;
    void step();
    // Fails every job (shutdown).
    void fail_all(const EngineError& error);

    // False when the model's device could not allocate the KV pool (Model::new_kv_pool
    // gave null): such a scheduler must not be used (Engine::load fails instead).
    bool kv_ready() const { return pool_ != nullptr; }

    // Measures energy with `counter` (not owned; outlives the scheduler) in windows of
    // at least min_window_s (energy_split.hpp). Without it, Completion::energy_j is -1.
    void measure_energy(EnergyCounter* counter, double min_window_s = 0.2);
    // The split so far; null when energy is not measured.
    const EnergySplit* energy() const { return energy_counter_ ? &energy_ : nullptr; }

    const SchedulerCounters& counters() const { return counters_; }
    const KvBlockPool& pool() const { return *pool_; }
    const SchedulerOptions& options() const { return options_; }
    bool speculating() const { return speculate_; }

private:
    struct Seq;
    struct Job;
    struct Planned;

    void cancel_abandoned();
    void admit();
    std::vector<Planned> plan();
    Status draft(std::vector<Planned>& plan);
    void start_samples(Job& job);
    void accept_token(Job& job, int index, TokenId token);
    void finish_sample(Job& job, int index, Finish reason);
    void preempt(Job& job);
    void fail(Job& job, EngineErrc code, const std::string& message);
    void complete_finished();
    int sequences_of(const Job& job) const;
    void step_batch();
    void read_energy();

    const Model& model_;
    const Tokenizer& tokenizer_;
    std::vector<TokenId> end_of_generation_;
    SchedulerOptions options_;
    bool speculate_ = false;
    int layer_end_ = 0;  // the main pass's last layer + 1 (E in early-exit-only mode)
    std::unique_ptr<KvBlockPool> pool_;  // before the jobs: their sequences release into it
    std::deque<std::unique_ptr<Job>> waiting_;
    std::vector<std::unique_ptr<Job>> running_;  // in admission order
    SchedulerCounters counters_;
    uint64_t next_job_id_ = 1;
    EnergyCounter* energy_counter_ = nullptr;
    EnergySplit energy_;
};

}  // namespace reprise::engine
