#pragma once
// The engine's narrow API (DESIGN.md section 7): load a model, submit a generation,
// receive its text as it is made. It knows nothing of HTTP, JSON or the cache; the
// proxy's adapter (proxy/engine_backend) turns it into a cache backend.
//
// Threads: submit() never computes. It queues the job (bounded: a full queue is an
// immediate `overloaded` error, so a burst cannot pile up unbounded work) and one
// engine thread runs jobs in order, each forward pass spread over the model's thread
// pool. Callbacks run on the engine thread; they must be quick and must not call back
// into the engine.
//
// A job makes n samples of one prompt: the prompt is prefilled once and its KV rows
// copied into each sample's cache, then the samples decode round-robin, one token each
// per turn, so n streams progress together. Sample i is drawn with the RNG seeded by
// sample_seed(key_hash, first_index + i): the same request and index give the same
// text on any machine with the same model (sampler.hpp).
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
#include "engine/model.hpp"
#include "engine/sampler.hpp"
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
    int max_queued = 64;                 // jobs waiting behind the running one
};

// What the engine tells a client about itself (/v1/models, /admin/stats).
struct EngineInfo {
    std::string name;
    std::string path;
    std::string device = "cpu";
    std::string weight_type;   // of the largest matrices as loaded: "F32", "Q8_0", ...
    std::string chat_family;   // "chatml", "llama3", ...; empty if the template is unsupported
    std::string chat_error;    // why chat is unavailable, when it is
    uint64_t n_params = 0;
    int n_ctx = 0;
    int n_vocab = 0;
    int threads = 1;
    int64_t loaded_at = 0;     // unix seconds ("created" in /v1/models)
};

enum class EngineErrc {
    invalid_request,   // the client's fault: bad messages, token ids, parameters
    context_exceeded,  // the prompt does not fit the context
    overloaded,        // the queue is full: retry later
    shutting_down,
    internal,          // a forward pass failed
};

struct EngineError {
    EngineErrc code = EngineErrc::internal;
    std::string message;
};

enum class Finish { stop, length };  // OpenAI's finish_reason "stop" / "length"

struct Submission {
    // The prompt: chat messages rendered with the model's template, else `text`, else
    // `tokens` (ids as given). Text is tokenized with BOS as the vocabulary says and
    // special tokens parsed, as llama.cpp's server does.
    bool chat = false;
    std::vector<ChatMessage> messages;
    std::string text;
    std::vector<TokenId> tokens;
    bool use_tokens = false;

    int n = 1;
    SamplerParams sampler;
    int max_tokens = -1;             // < 0: until the context is full
    std::vector<std::string> stop;   // stop strings: cut before the match, never streamed
    uint64_t key_hash = 0;
    // Read when the job starts, not when it is queued: the cache may move a
    // generation's first index down while it waits (an earlier one failed).
    std::function<uint64_t()> first_index;
};

struct SampleResult {
    std::string text;
    Finish finish = Finish::length;
    int completion_tokens = 0;  // generated tokens, the end-of-generation token included
};

struct Completion {
    int prompt_tokens = 0;
    std::vector<SampleResult> samples;
};

struct Callbacks {
    // A piece of sample i's text: whole UTF-8 characters, never part of a stop string.
    std::function<void(int sample, std::string_view text)> on_text;
    // Exactly once: the completion, or the error (then nothing else follows).
    std::function<void(const Completion*, const EngineError*)> on_done;
};

struct EngineStats {
    uint64_t jobs = 0, jobs_failed = 0, samples = 0;
    uint64_t prompt_tokens = 0, generated_tokens = 0;
    uint64_t forward_passes = 0;     // each one full pass over every layer
    double prefill_seconds = 0, decode_seconds = 0;
    int queued = 0;
    bool running = false;
    uint64_t kv_bytes_in_use = 0;
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
    struct Job {
        Submission submission;
        Callbacks callbacks;
    };

    Engine() = default;
    void worker();
    void run(Job& job);
    Result<std::vector<TokenId>> prompt_tokens(const Submission& s, EngineError* error) const;
    bool is_end_of_generation(TokenId id) const;

    EngineInfo info_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<Tokenizer> tokenizer_;
    ChatFamily chat_family_ = ChatFamily::Chatml;
    bool chat_ok_ = false;
    std::vector<TokenId> end_of_generation_;
    int max_queued_ = 64;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Job> queue_;
    std::atomic<bool> stopping_{false};  // written under mu_ (for cv_), read per token without it
    EngineStats stats_;
    std::thread thread_;
};

}  // namespace reprise::engine
