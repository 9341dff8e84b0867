#pragma once
// A Llama model on the CPU: weights loaded from GGUF (checked by llama_meta), a
// contiguous per-sequence KV cache, and a forward pass that takes a batch of tokens
// (prefill as matrix-matrix products) and returns logits.
//
// Weight storage: Q8_0 and Q4_0 stay quantized and are multiplied with Q8_0-quantized
// activations (integer dot products, as llama.cpp); F32 stays F32; F16, BF16 and Q4_K
// are converted to F32 at load. ModelOptions::quantize can requantize the F32/F16/BF16
// matrices to Q8_0 or Q4_0 at load (norm vectors always stay F32).
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/ggml_types.hpp"
#include "engine/gguf.hpp"
#include "engine/llama_meta.hpp"
#include "engine/status.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {

struct ModelOptions {
    int n_threads = 1;
    // F32 (default): keep the file's types. Q8_0 / Q4_0: quantize float matrices to it.
    GgmlType quantize = GgmlType::F32;
};

// One weight matrix [rows][cols] (GGUF ne = {cols, rows}) in F32, Q8_0 or Q4_0.
struct Weight {
    GgmlType type = GgmlType::F32;
    int rows = 0, cols = 0;
    std::vector<uint8_t> data;  // rows * row_bytes
    size_t row_bytes = 0;
};

// Contiguous KV cache of one sequence: per layer, [n_ctx][n_embd_kv] for K and for V.
// The model reaches it only through view() and row pointers, so a paged cache can
// replace it without touching the kernels.
class KvCache {
public:
    KvCache(int n_layer, int n_ctx, int n_embd_kv);
    int n_ctx() const { return n_ctx_; }
    float* k_row(int layer, int pos) { return k_.data() + (size_t(layer) * n_ctx_ + pos) * n_embd_kv_; }
    float* v_row(int layer, int pos) { return v_.data() + (size_t(layer) * n_ctx_ + pos) * n_embd_kv_; }
    // Copies positions [0, n_tokens) of every layer from src (same shape but for
    // n_ctx): the n samples of one prompt start from one prefill.
    void copy_prefix(const KvCache& src, int n_tokens) {
        for (int l = 0; l < n_layer_; ++l) {
            const size_t rows = size_t(n_tokens) * n_embd_kv_;
            std::copy_n(src.k_.data() + size_t(l) * src.n_ctx_ * n_embd_kv_, rows, k_.data() + size_t(l) * n_ctx_ * n_embd_kv_);
            std::copy_n(src.v_.data() + size_t(l) * src.n_ctx_ * n_embd_kv_, rows, v_.data() + size_t(l) * n_ctx_ * n_embd_kv_);
        }
    }
    size_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }
    struct View { const float* k; const float* v; size_t stride; };
    View view(int layer) const {
        return {k_.data() + size_t(layer) * n_ctx_ * n_embd_kv_, v_.data() + size_t(layer) * n_ctx_ * n_embd_kv_, size_t(n_embd_kv_)};
    }

private:
    int n_layer_, n_ctx_, n_embd_kv_;
    std::vector<float> k_, v_;
};

class Model {
public:
    // The model copies what it needs: the GgufFile may be closed afterwards.
    static Result<std::unique_ptr<Model>> from_gguf(const GgufFile& f, const ModelOptions& opt = {});
    static Result<std::unique_ptr<Model>> load(const std::string& path, const ModelOptions& opt = {});

    const LlamaHParams& hparams() const { return hp_; }
    int n_vocab() const { return int(hp_.n_vocab); }
    bool tied_output() const { return tied_; }
    size_t n_params() const;
    // The type the layers' matrices are multiplied in (F32, Q8_0 or Q4_0).
    GgmlType matrix_type() const { return layers_.empty() ? GgmlType::F32 : layers_.front().wq.type; }

    // A cache for n_ctx positions (0: the training context length).
    std::unique_ptr<KvCache> new_kv_cache(int n_ctx = 0) const;

    // Runs tokens[0..n) at positions pos0..pos0+n-1 (the cache holds 0..pos0-1) and
    // writes logits: for every token (n * n_vocab) when all_logits, else only the last
    // (n_vocab). Errors (no crash) on bad token ids or a full cache. Safe to call from
    // several threads with separate caches (the thread pool serialises their matmuls).
    Status forward(KvCache& kv, const int32_t* tokens, int n, int pos0, float* logits, bool all_logits = false) const;

    ThreadPool* pool() const { return pool_.get(); }

private:
    Model() = default;
    struct Layer {
        std::vector<float> attn_norm, ffn_norm;
        Weight wq, wk, wv, wo, gate, up, down;
    };
    // Y[n][w.rows] = w * X[n][w.cols]; q8 is scratch for the quantized activations.
    void matmul(const Weight& w, const float* X, int n, float* Y, std::vector<BlockQ8_0>& q8) const;

    LlamaHParams hp_;
    Weight tok_embd_, output_;
    bool tied_ = false;
    std::vector<float> output_norm_;
    std::vector<float> rope_freqs_;  // empty: no per-frequency factors
    std::vector<Layer> layers_;
    std::unique_ptr<ThreadPool> pool_;
};

}  // namespace reprise::engine
