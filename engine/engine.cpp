#include "engine/engine.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "engine/utf8_stream.hpp"

namespace reprise::engine {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Tokens that end a turn besides EOS, by their text, as llama.cpp's llama-vocab.cpp
// collects its "end of generation" set: a chat model ends its answer with its
// template's end-of-turn token, which is often not the vocabulary's EOS.
constexpr std::string_view kEndOfTurnTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<end_of_turn>", "<|end_of_text|>", "<|eom_id|>", "</s>",
};

// One sample of a job while it decodes.
struct SampleState {
    std::unique_ptr<KvCache> kv;
    Sampler sampler;
    StopMatcher stop;
    Utf8Stream utf8;
    std::vector<float> logits;
    SampleResult result;
    int pos = 0;
    bool done = false;

    SampleState(const SamplerParams& p, uint64_t key, uint64_t index, std::vector<std::string> stops)
        : sampler(p, key, index), stop(std::move(stops)) {}
};

}  // namespace

Result<std::unique_ptr<Engine>> Engine::load(const EngineOptions& o) {
    auto file = GgufFile::open(o.model_path);
    if (!file.ok()) return Status::error("engine model " + o.model_path + ": " + file.error());
    const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
    ModelOptions mo;
    mo.n_threads = o.threads > 0 ? o.threads : cores;
    mo.quantize = o.quantize;
    auto model = Model::from_gguf(**file, mo);
    if (!model.ok()) return Status::error("engine model " + o.model_path + ": " + model.error());
    auto tokenizer = Tokenizer::from_gguf(**file);
    if (!tokenizer.ok()) return Status::error("engine model " + o.model_path + ": " + tokenizer.error());

    std::unique_ptr<Engine> e(new Engine());
    e->model_ = std::move(model.value());
    e->tokenizer_ = std::move(tokenizer.value());
    e->max_queued_ = std::max(0, o.max_queued);

    EngineInfo& info = e->info_;
    info.path = o.model_path;
    info.loaded_at = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    info.name = o.name.empty() ? std::filesystem::path(o.model_path).stem().string() : o.name;
    info.n_params = e->model_->n_params();
    info.n_vocab = e->model_->n_vocab();
    info.threads = mo.n_threads;
    info.weight_type = std::string(ggml_type_name(uint32_t(e->model_->matrix_type())));
    const int train = int(e->model_->hparams().n_ctx_train);
    info.n_ctx = o.context > 0 ? std::min(o.context, train) : train;
    // A model whose template we cannot render still serves raw completions.
    if (auto family = detect_chat_family(**file); family.ok()) {
        e->chat_family_ = *family;
        e->chat_ok_ = true;
        info.chat_family = chat_family_name(*family);
    } else {
        info.chat_error = family.error();
    }

    const Tokenizer& t = *e->tokenizer_;
    if (t.eos() != kNoToken) e->end_of_generation_.push_back(t.eos());
    for (auto text : kEndOfTurnTexts) {
        const TokenId id = t.find(text);
        if (id != kNoToken && (t.token_type(id) == TokenType::Control || t.token_type(id) == TokenType::UserDefined) &&
            std::find(e->end_of_generation_.begin(), e->end_of_generation_.end(), id) == e->end_of_generation_.end())
            e->end_of_generation_.push_back(id);
    }
    e->thread_ = std::thread([raw = e.get()] { raw->worker(); });
    return e;
}

Engine::~Engine() {
    std::deque<Job> abandoned;
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        abandoned.swap(queue_);
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    const EngineError error{EngineErrc::shutting_down, "the engine is shutting down"};
    for (auto& job : abandoned)
        if (job.callbacks.on_done) job.callbacks.on_done(nullptr, &error);
}

std::optional<EngineError> Engine::submit(Submission s, Callbacks cb) {
    if (s.n < 1 || s.n > 128) return EngineError{EngineErrc::invalid_request, "n must be between 1 and 128"};
    if (s.max_tokens == 0) return EngineError{EngineErrc::invalid_request, "max_tokens must be at least 1"};
    if (s.chat && !chat_ok_)
        return EngineError{EngineErrc::invalid_request, "model " + info_.name + " has no chat template the engine can render (" +
                                                            info_.chat_error + "); use /v1/completions with a raw prompt"};
    std::lock_guard lock(mu_);
    if (stopping_) return EngineError{EngineErrc::shutting_down, "the engine is shutting down"};
    if (int(queue_.size()) >= max_queued_ + (stats_.running ? 0 : 1))
        return EngineError{EngineErrc::overloaded, "the engine's queue is full (" + std::to_string(max_queued_) + " jobs waiting)"};
    queue_.push_back(Job{std::move(s), std::move(cb)});
    stats_.queued = int(queue_.size());
    cv_.notify_one();
    return std::nullopt;
}

EngineStats Engine::stats() const {
    std::lock_guard lock(mu_);
    return stats_;
}

void Engine::worker() {
    for (;;) {
        Job job;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            job = std::move(queue_.front());
            queue_.pop_front();
            stats_.queued = int(queue_.size());
            stats_.running = true;
        }
        run(job);
        std::lock_guard lock(mu_);
        stats_.running = false;
        stats_.kv_bytes_in_use = 0;
    }
}

bool Engine::is_end_of_generation(TokenId id) const {
    return std::find(end_of_generation_.begin(), end_of_generation_.end(), id) != end_of_generation_.end();
}

Result<std::vector<TokenId>> Engine::prompt_tokens(const Submission& s, EngineError* error) const {
    error->code = EngineErrc::invalid_request;
    std::vector<TokenId> tokens;
    if (s.chat) {
        if (Status st = check_chat_messages(s.messages); !st.ok()) return st;
        auto text = apply_chat_template(chat_family_, s.messages);
        if (!text.ok()) return text.status();
        tokens = tokenizer_->encode(*text, /*add_special=*/true, /*parse_special=*/true);
    } else if (s.use_tokens) {
        for (TokenId id : s.tokens)
            if (id < 0 || id >= info_.n_vocab)
                return Status::error("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                                     std::to_string(info_.n_vocab - 1) + ")");
        tokens = s.tokens;
    } else {
        tokens = tokenizer_->encode(s.text, /*add_special=*/true, /*parse_special=*/true);
    }
    if (tokens.empty()) return Status::error("the prompt is empty");
    if (int(tokens.size()) >= info_.n_ctx) {
        error->code = EngineErrc::context_exceeded;
        return Status::error("the prompt is " + std::to_string(tokens.size()) + " tokens; the engine's context holds " +
                             std::to_string(info_.n_ctx) + " (prompt and completion together)");
    }
    return tokens;
}

void Engine::run(Job& job) {
    const Submission& s = job.submission;
    EngineError error;
    auto fail = [&](EngineErrc code, std::string message) {
        error.code = code;
        error.message = std::move(message);
        {
            std::lock_guard lock(mu_);
            ++stats_.jobs_failed;
        }
        if (job.callbacks.on_done) job.callbacks.on_done(nullptr, &error);
    };
    auto prompt = prompt_tokens(s, &error);
    if (!prompt.ok()) return fail(error.code, prompt.error());
    const int n_prompt = int(prompt->size());
    // Each sample's cache is sized for what it can use: the prompt plus max_tokens,
    // within the context. (A paged cache, issue 7, will share the prompt's rows.)
    const int room = info_.n_ctx - n_prompt;
    const int max_new = s.max_tokens < 0 ? room : std::min(s.max_tokens, room);
    const int ctx = n_prompt + max_new;
    const uint64_t first = s.first_index ? s.first_index() : 0;

    const auto prefill_start = Clock::now();
    auto base = model_->new_kv_cache(ctx);
    std::vector<float> logits(size_t(info_.n_vocab));
    if (Status st = model_->forward(*base, prompt->data(), n_prompt, 0, logits.data()); !st.ok())
        return fail(EngineErrc::internal, "prefill failed: " + st.message());
    const double prefill_s = seconds_since(prefill_start);

    std::vector<std::unique_ptr<SampleState>> samples;
    for (int i = 0; i < s.n; ++i) {
        auto st = std::make_unique<SampleState>(s.sampler, s.key_hash, first + uint64_t(i), s.stop);
        if (i + 1 == s.n) {
            st->kv = std::move(base);  // the last sample keeps the prefilled cache itself
        } else {
            st->kv = model_->new_kv_cache(ctx);
            st->kv->copy_prefix(*base, n_prompt);
        }
        st->logits = logits;
        st->pos = n_prompt;
        samples.push_back(std::move(st));
    }
    {
        std::lock_guard lock(mu_);
        uint64_t bytes = 0;
        for (auto& st : samples) bytes += st->kv->bytes();
        stats_.kv_bytes_in_use = bytes;
        stats_.prompt_tokens += uint64_t(n_prompt);
        stats_.forward_passes += 1;
        stats_.prefill_seconds += prefill_s;
    }

    const auto decode_start = Clock::now();
    uint64_t generated = 0, passes = 0;
    auto emit = [&](int i, const std::string& text) {
        if (!text.empty() && job.callbacks.on_text) job.callbacks.on_text(i, text);
    };
    auto finish = [&](int i, Finish reason) {
        SampleState& st = *samples[size_t(i)];
        if (reason != Finish::stop || !st.stop.stopped()) {
            std::string tail = st.stop.feed(st.utf8.flush());
            if (!st.stop.stopped()) tail += st.stop.flush();
            st.result.text += tail;
            emit(i, tail);
        }
        st.result.finish = reason;
        st.done = true;
    };
    for (bool any = true; any;) {
        any = false;
        for (int i = 0; i < s.n; ++i) {
            SampleState& st = *samples[size_t(i)];
            if (st.done) continue;
            if (stopping_.load(std::memory_order_relaxed)) return fail(EngineErrc::shutting_down, "the engine is shutting down");
            const TokenId tok = st.sampler.sample(st.logits.data(), info_.n_vocab);
            ++st.result.completion_tokens;
            ++generated;
            if (is_end_of_generation(tok)) {
                finish(i, Finish::stop);
                continue;
            }
            std::string text = st.stop.feed(st.utf8.feed(tokenizer_->token_to_piece(tok)));
            st.result.text += text;
            emit(i, text);
            if (st.stop.stopped()) {
                finish(i, Finish::stop);
                continue;
            }
            if (st.result.completion_tokens >= max_new) {
                finish(i, Finish::length);
                continue;
            }
            if (Status fs = model_->forward(*st.kv, &tok, 1, st.pos, st.logits.data()); !fs.ok())
                return fail(EngineErrc::internal, "decode failed: " + fs.message());
            ++st.pos;
            ++passes;
            any = true;
        }
    }

    Completion done;
    done.prompt_tokens = n_prompt;
    for (auto& st : samples) done.samples.push_back(std::move(st->result));
    {
        std::lock_guard lock(mu_);
        ++stats_.jobs;
        stats_.samples += uint64_t(s.n);
        stats_.generated_tokens += generated;
        stats_.forward_passes += passes;
        stats_.decode_seconds += seconds_since(decode_start);
    }
    if (job.callbacks.on_done) job.callbacks.on_done(&done, nullptr);
}

}  // namespace reprise::engine
