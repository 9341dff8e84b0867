#pragma once
// What a client hands the engine (a Submission of n samples of one prompt, with
// Callbacks) and what it gets back (a Completion or an EngineError). Shared by the
// engine's front (engine.hpp) and its scheduler (scheduler.hpp).
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/chat_template.hpp"
#include "engine/sampler.hpp"
#include "engine/tokenizer.hpp"

namespace reprise::engine {

enum class EngineErrc {
    invalid_request,   // the client's fault: bad messages, token ids, parameters
    context_exceeded,  // the prompt does not fit the context
    overloaded,        // the queue is full: retry later
    shutting_down,
    cancelled,         // Submission::cancelled was set (every client of the job left)
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
    // Set by the client (any thread) to abandon the job: it leaves the batch at the
    // next step, its KV blocks are freed and on_done reports `cancelled`.
    std::shared_ptr<std::atomic<bool>> cancelled;
};

struct SampleResult {
    std::string text;
    Finish finish = Finish::length;
    int completion_tokens = 0;  // generated tokens, the end-of-generation token included
    std::vector<TokenId> tokens;  // the generated ids (a stop string's tokens included)
};

struct Completion {
    int prompt_tokens = 0;
    std::vector<SampleResult> samples;
    // Measured joules attributed to this job (energy_split.hpp); < 0: not measured (no
    // energy counter, as on the CPU, or none of its windows closed yet).
    double energy_j = -1;
};

struct Callbacks {
    // A piece of sample i's text: whole UTF-8 characters, never part of a stop string.
    std::function<void(int sample, std::string_view text)> on_text;
    // Exactly once: the completion, or the error (then nothing else follows).
    std::function<void(const Completion*, const EngineError*)> on_done;
};

}  // namespace reprise::engine
