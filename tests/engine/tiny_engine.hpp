#pragma once
// A tiny generated model with the built-in vocabulary, loaded as the scheduler sees it
// (Model + Tokenizer), for the batching and speculation tests. Random weights: what
// the tests compare is the engine against itself (alone vs batched, shared vs not,
// speculative vs plain), which must agree exactly whatever the weights.
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "engine/model_maker.hpp"
#include "engine/scheduler.hpp"

namespace reprise::engine::test {

struct TinyEngine {
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tokenizer;
    std::string path;

    // shape.name distinguishes the files of different shapes within one run.
    static TinyEngine make(TinyLlamaShape shape, Device device = Device::Cpu) {
        auto vocab_bytes = builtin_vocab_gguf();
        auto vocab = GgufFile::from_memory(vocab_bytes.data(), vocab_bytes.size());
        REQUIRE(vocab.ok());
        GgufWriter w;
        REQUIRE(make_tiny_llama(shape, **vocab, &w).ok());
        TinyEngine t;
        t.path = (std::filesystem::temp_directory_path() /
                  ("reprise-" + shape.name + "-" + std::to_string(::getpid()) + ".gguf")).string();
        REQUIRE(w.write_file(t.path).ok());
        auto f = GgufFile::open(t.path);
        REQUIRE(f.ok());
        ModelOptions mo;
        mo.n_threads = 2;
        mo.device = device;
        auto m = Model::from_gguf(**f, mo);
        REQUIRE_MESSAGE(m.ok(), m.error());
        auto tok = Tokenizer::from_gguf(**f);
        REQUIRE(tok.ok());
        t.model = std::move(m.value());
        t.tokenizer = std::move(tok.value());
        return t;
    }
};

// The tests' shape: dim 64, Q8_0, n_layer layers; `name` also names the temp file.
inline TinyLlamaShape tiny_shape(uint32_t n_layer, uint32_t n_ctx, uint64_t seed, std::string name) {
    TinyLlamaShape shape;
    shape.n_embd = 64;
    shape.n_ff = 128;
    shape.n_layer = n_layer;
    shape.n_ctx = n_ctx;
    shape.type = GgmlType::Q8_0;
    shape.seed = seed;
    shape.name = std::move(name);
    return shape;
}

// What a job ended with, collected from its callbacks.
struct JobOutcome {
    bool done = false, ok = false;
    EngineError error;
    Completion completion;
    std::vector<std::string> streamed;
};

inline Callbacks collect(const std::shared_ptr<JobOutcome>& out, int n) {
    out->streamed.assign(size_t(n), "");
    Callbacks cb;
    cb.on_text = [out](int i, std::string_view text) { out->streamed[size_t(i)] += text; };
    cb.on_done = [out](const Completion* c, const EngineError* e) {
        REQUIRE_FALSE(out->done);  // exactly once
        out->done = true;
        out->ok = c != nullptr;
        if (c) out->completion = *c;
        else out->error = *e;
    };
    return cb;
}

// Random prompt ids (from the byte range of the vocabulary: plain text tokens).
inline std::vector<TokenId> random_prompt(uint64_t seed, int length) {
    std::vector<TokenId> p;
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < length; ++i) {
        z = mix64(z + 0x9E3779B97F4A7C15ull);
        p.push_back(TokenId(32 + z % 200));
    }
    return p;
}

inline Submission job(int n, int max_tokens, float temperature, uint64_t key, uint64_t first = 0) {
    Submission s;
    s.n = n;
    s.max_tokens = max_tokens;
    s.sampler.temperature = temperature;
    s.key_hash = key;
    s.first_index = [first] { return first; };
    return s;
}

// Steps until idle (bounded, so a scheduler bug fails instead of hanging).
inline void run_to_idle(Scheduler& s, int max_steps = 200000) {
    for (int i = 0; i < max_steps && !s.idle(); ++i) s.step();
    REQUIRE(s.idle());
}

}  // namespace reprise::engine::test
