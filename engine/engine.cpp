#include "engine/engine.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "engine/utf8_stream.hpp"

namespace reprise::engine {
namespace {

// Tokens that end a turn besides EOS, by their text, as llama.cpp's llama-vocab.cpp
// collects its "end of generation" set: a chat model ends its answer with its
// template's end-of-turn token, which is often not the vocabulary's EOS.
constexpr std::string_view kEndOfTurnTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<end_of_turn>", "<|end_of_text|>", "<|eom_id|>", "</s>",
};

}  // namespace

Result<std::unique_ptr<Engine>> Engine::load(const EngineOptions& o) {
    auto file = GgufFile::open(o.model_path);
    if (!file.ok()) return Status::error("engine model " + o.model_path + ": " + file.error());
    const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
    ModelOptions mo;
    mo.n_threads = o.threads > 0 ? o.threads : cores;
    mo.quantize = o.quantize;
    mo.device = o.device;
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
    info.device = e->model_->device();
    info.device_name = e->model_->device_info() ? e->model_->device_info()->name : "";
    info.device_note = e->model_->device_note();
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
    std::vector<TokenId> end_of_generation;
    if (t.eos() != kNoToken) end_of_generation.push_back(t.eos());
    for (auto text : kEndOfTurnTexts) {
        const TokenId id = t.find(text);
        if (id != kNoToken && (t.token_type(id) == TokenType::Control || t.token_type(id) == TokenType::UserDefined) &&
            std::find(end_of_generation.begin(), end_of_generation.end(), id) == end_of_generation.end())
            end_of_generation.push_back(id);
    }

    const int n_layer = e->model_->n_layer();
    if (o.exit_layer < 0 || o.exit_layer >= n_layer)
        return Status::error("engine: exit_layer " + std::to_string(o.exit_layer) + " must be below the model's " +
                             std::to_string(n_layer) + " layers (0 = off)");
    SchedulerOptions so;
    so.n_ctx = info.n_ctx;
    so.block_size = std::max(1, o.kv_block_size);
    const auto block_bytes = uint64_t(2) * n_layer * e->model_->hparams().n_embd_kv() * sizeof(float) * so.block_size;
    so.n_blocks = int(std::min<uint64_t>(uint64_t(std::max(0, o.kv_cache_mb)) * (1u << 20) / block_bytes, 1u << 30));
    so.max_batch_tokens = o.max_batch_tokens;
    so.max_sequences = o.max_sequences;
    so.exit_layer = o.exit_layer;
    so.draft_tokens = o.draft_tokens;
    so.early_exit_only = o.early_exit_only;
    e->scheduler_ = std::make_unique<Scheduler>(*e->model_, t, std::move(end_of_generation), so);
    if (!e->scheduler_->kv_ready())
        return Status::error("engine: the KV cache (" + std::to_string(uint64_t(e->scheduler_->options().n_blocks) * block_bytes >> 20) +
                             " MB) does not fit on the device " + info.device_name +
                             "; lower [engine] kv_cache_mb or context, or run on the CPU");
    // Energy: the injected counter, else NVML's for the model's GPU.
    e->energy_counter_ = o.energy_counter;
    if (!e->energy_counter_) {
        if (const DeviceInfo* dev = e->model_->device_info()) {
            auto nvml = NvmlEnergy::open(dev->pci_bus_id);
            if (nvml.ok()) e->energy_counter_ = std::move(nvml.value());
            else info.energy_note = nvml.error();
        }
    }
    if (e->energy_counter_) {
        e->scheduler_->measure_energy(e->energy_counter_.get(), std::max(0.0, o.energy_window_s));
        info.energy_method = "measured";
    }
    info.n_layer = n_layer;
    info.exit_layer = o.exit_layer;
    info.draft_tokens = o.exit_layer > 0 ? o.draft_tokens : 0;
    info.early_exit_only = o.exit_layer > 0 && o.early_exit_only;
    e->publish_stats();
    e->thread_ = std::thread([raw = e.get()] { raw->worker(); });
    return e;
}

Engine::~Engine() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    // The worker is gone: what it had and what is still queued fail here, once each.
    const EngineError error{EngineErrc::shutting_down, "the engine is shutting down"};
    if (scheduler_) scheduler_->fail_all(error);  // null when load() failed half-way
    for (auto& q : queue_)
        if (q.callbacks.on_done) q.callbacks.on_done(nullptr, &error);
}

std::optional<EngineError> Engine::submit(Submission s, Callbacks cb) {
    if (s.n < 1 || s.n > 128) return EngineError{EngineErrc::invalid_request, "n must be between 1 and 128"};
    if (s.max_tokens == 0) return EngineError{EngineErrc::invalid_request, "max_tokens must be at least 1"};
    if (s.chat && !chat_ok_)
        return EngineError{EngineErrc::invalid_request, "model " + info_.name + " has no chat template the engine can render (" +
                                                            info_.chat_error + "); use /v1/completions with a raw prompt"};
    std::lock_guard lock(mu_);
    if (stopping_) return EngineError{EngineErrc::shutting_down, "the engine is shutting down"};
    // Jobs not yet admitted: those handed over to the scheduler plus the new queue.
    if (stats_.queued + int(queue_.size()) >= max_queued_ + (stats_.running ? 0 : 1))
        return EngineError{EngineErrc::overloaded, "the engine's queue is full (" + std::to_string(max_queued_) + " jobs waiting)"};
    queue_.push_back(Queued{std::move(s), std::move(cb)});
    cv_.notify_one();
    return std::nullopt;
}

EngineStats Engine::stats() const {
    std::lock_guard lock(mu_);
    EngineStats st = stats_;
    st.queued += int(queue_.size());
    return st;
}

void Engine::publish_stats() {
    const Scheduler& sc = *scheduler_;
    const SchedulerCounters& c = sc.counters();
    const KvBlockPool& pool = sc.pool();
    std::lock_guard lock(mu_);
    EngineStats& st = stats_;
    st.jobs = c.jobs;
    st.jobs_failed = c.jobs_failed + prompt_failures_;
    st.jobs_cancelled = c.jobs_cancelled;
    st.samples = c.samples;
    st.prompt_tokens = c.prompt_tokens;
    st.generated_tokens = c.generated_tokens;
    st.steps = c.steps;
    st.full_passes = c.full_passes;
    st.drafted = c.drafted;
    st.accepted = c.accepted;
    st.preemptions = c.preemptions;
    st.prefill_seconds = c.prefill_seconds;
    st.decode_seconds = c.decode_seconds;
    st.queued = sc.waiting();
    st.running_jobs = sc.running_jobs();
    st.running_sequences = sc.running_sequences();
    st.running = !sc.idle();
    st.kv_block_size = pool.block_size();
    st.kv_blocks_total = pool.n_blocks();
    st.kv_blocks_used = pool.used_blocks();
    st.kv_bytes_per_token = pool.bytes_per_token();
    st.kv_bytes_in_use = uint64_t(pool.used_blocks()) * pool.bytes_per_block();
    st.kv_waste = pool.waste();
    if (const EnergySplit* energy = sc.energy()) {
        st.energy_measured_j = energy->measured_j();
        st.energy_windows = energy->windows();
    }
}

void Engine::worker() {
    for (;;) {
        std::deque<Queued> arrived;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !scheduler_->idle(); });
            if (stopping_) return;
            arrived.swap(queue_);
        }
        // Tokenizing on this thread keeps submit() cheap for the proxy's I/O threads.
        for (auto& q : arrived) {
            EngineError error;
            auto prompt = prompt_tokens(q.submission, &error);
            if (!prompt.ok()) {
                error.message = prompt.error();
                if (q.callbacks.on_done) q.callbacks.on_done(nullptr, &error);
                ++prompt_failures_;
                continue;
            }
            // Stats are published before the client hears of the end, so a client that
            // reads /admin/stats right after its answer sees its job counted.
            if (auto done = std::move(q.callbacks.on_done)) {
                q.callbacks.on_done = [this, done = std::move(done)](const Completion* c, const EngineError* e) {
                    publish_stats();
                    done(c, e);
                };
            }
            scheduler_->add(std::move(q.submission), std::move(q.callbacks), std::move(prompt.value()));
        }
        scheduler_->step();
        publish_stats();
    }
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

}  // namespace reprise::engine
