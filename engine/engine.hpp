#pragma once
// The engine's narrow API (DESIGN.md section 7): load a model, submit a generation,
// receive its text as it is made. It knows nothing of HTTP, JSON or the cache; the
// proxy's adapter (proxy/engine_backend) turns it into a cache backend.
//
// Threads: submit() never computes. It queues the job (bounded: a full queue is an
// immediate `overloaded` error, so a burst cannot pile up unbounded work) and one
// engine thread runs the continuous-batching scheduler (scheduler.hpp), each forward
// pass spread over the model's thread pool. Callbacks run on the engine thread; they
// must be quick and must not call back into the engine.
//
// A job makes n samples of one prompt: the prompt is prefilled once and the samples
// share its KV blocks, decoding together with every other running job's samples.
// Sample i is drawn with the RNG seeded by sample_seed(key_hash, first_index + i): the
// same request and index give the same text on any machine with the same model and
// speculation settings (sampler.hpp, speculative.hpp).
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/chat_template.hpp"
#include "engine/ggml_types.hpp"
#include "engine/job.hpp"
#include "engine/model.hpp"
#include "engine/nvml_energy.hpp"
#include "engine/sampler.hpp"
#include "engine/scheduler.hpp"
#include "engine/status.hpp"
#include "engine/tokenizer.hpp"

namespace reprise::engine {

struct EngineOptions {
    std::string model_path;
    std::string name;                    // the model's id for clients; "" = the file's stem
    int threads = 0;                     // forward-pass threads; 0 = all cores
    GgmlType quantize = GgmlType::F32;   // F32 = keep the file's types; Q8_0/Q4_0 = requantize at load
    int context = 4096;                  // tokens per sequence (prompt + completion), capped at the
                                         // model's training context; 0 = the training context
    int max_queued = 64;                 // jobs waiting to be admitted; beyond, submit() says overloaded
    // Scheduling and memory (scheduler.hpp). The KV pool takes kv_cache_mb (at least one
    // full context); a step runs at most max_batch_tokens tokens of at most
    // max_sequences samples.
    int kv_block_size = 16;
    int kv_cache_mb = 1024;
    int max_batch_tokens = 512;
    int max_sequences = 64;
    // Self-speculative decoding (speculative.hpp): draft with the first exit_layer
    // layers (0 = off), draft_tokens per verification; early_exit_only skips the
    // verification (lossy: the output is the E-layer model's, not the model's).
    int exit_layer = 0;
    int draft_tokens = 4;
    bool early_exit_only = false;
    // Where the forward passes run (device_model.hpp): Auto = CUDA when a device can
    // take the model, else the CPU (EngineInfo::device_note says why); Cuda = the load
    // fails when no device can.
    Device device = Device::Auto;
    // Measured energy (energy_split.hpp). Tests only: a counter to use instead of NVML.
    // Null = NVML's counter of the model's GPU when it runs on CUDA and NVML opens;
    // otherwise nothing is measured (energy_method "estimated").
    std::shared_ptr<EnergyCounter> energy_counter;
    double energy_window_s = 0.2;        // the shortest window the counter is split over
};

// What the engine tells a client about itself (/v1/models, /admin/stats).
struct EngineInfo {
    std::string name;
    std::string path;
    std::string device = "cpu";  // where the passes run: "cpu" or "cuda" (Model::device)
    std::string device_name;     // the GPU ("NVIDIA H100 80GB HBM3"); "" on the CPU
    std::string device_note;     // why an Auto load stayed on the CPU; "" otherwise
    std::string energy_method = "estimated";  // "measured" when an energy counter is read
    std::string energy_note;     // why not measured, when the model is on a GPU (NVML's error)
    std::string weight_type;   // of the largest matrices as loaded: "F32", "Q8_0", ...
    std::string chat_family;   // "chatml", "llama3", ...; empty if the template is unsupported
    std::string chat_error;    // why chat is unavailable, when it is
    uint64_t n_params = 0;
    int n_ctx = 0;
    int n_vocab = 0;
    int threads = 1;
    int n_layer = 0;
    int exit_layer = 0;        // speculation as configured (0: off)
    int draft_tokens = 0;
    bool early_exit_only = false;
    int64_t loaded_at = 0;     // unix seconds ("created" in /v1/models)
};

struct EngineStats {
    uint64_t jobs = 0, jobs_failed = 0, jobs_cancelled = 0, samples = 0;
    uint64_t prompt_tokens = 0, generated_tokens = 0;
    uint64_t steps = 0;        // batched forward passes
    uint64_t full_passes = 0;  // per sample: passes through every layer that produced tokens
    uint64_t drafted = 0, accepted = 0, preemptions = 0;
    double prefill_seconds = 0, decode_seconds = 0;
    int queued = 0;            // jobs not admitted yet
    int running_jobs = 0, running_sequences = 0;
    bool running = false;
    // The paged KV cache now.
    int kv_block_size = 0, kv_blocks_total = 0, kv_blocks_used = 0;
    uint64_t kv_bytes_per_token = 0, kv_bytes_in_use = 0;
    double kv_waste = 0;       // idle slots in used blocks / all slots in used blocks
    // Measured energy (0 when not measured): joules of the closed windows, and how many.
    double energy_measured_j = 0;
    uint64_t energy_windows = 0;
    // Speculation: drafts kept / drafted, generated tokens / full passes.
    double draft_acceptance_rate() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
    double tokens_per_full_pass() const { return full_passes ? double(generated_tokens) / double(full_passes) : 0.0; }
};

class Engine {
public:
    static Result<std::unique_ptr<Engine>> load(const EngineOptions& options);
    ~Engine();  // queued jobs fail with shutting_down; the running one stops at its next token
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const EngineInfo& info() const { return info_; }
    const Tokenizer& tokenizer() const { return *tokenizer_; }

    // Queues a job. On an error returned here no callback is ever called.
    std::optional<EngineError> submit(Submission submission, Callbacks callbacks);

    EngineStats stats() const;

private:
    struct Queued {
        Submission submission;
        Callbacks callbacks;
    };

    Engine() = default;
    void worker();
    Result<std::vector<TokenId>> prompt_tokens(const Submission& s, EngineError* error) const;
    void publish_stats();

    EngineInfo info_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<Tokenizer> tokenizer_;
    ChatFamily chat_family_ = ChatFamily::Chatml;
    bool chat_ok_ = false;
    int max_queued_ = 64;
    std::shared_ptr<EnergyCounter> energy_counter_;  // before the scheduler, which reads it
    std::unique_ptr<Scheduler> scheduler_;  // the worker thread's alone
    uint64_t prompt_failures_ = 0;          // jobs refused before the scheduler (worker thread)

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Queued> queue_;
    bool stopping_ = false;
    EngineStats stats_;
    std::thread thread_;
};

}  // namespace reprise::engine
