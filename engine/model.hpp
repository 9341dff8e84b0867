#pragma once
// A Llama-family model (llama, qwen2, qwen3) on the CPU: weights loaded from GGUF
// (checked by llama_meta) and a forward pass over a batch of sequences (their tokens
// concatenated, so prefill and batched decode are matrix-matrix products) reading and
// writing a paged KV cache.
//
// Batch invariance: a token's result depends only on its own inputs and its
// sequence's cache, never on what else is in the batch or how a prompt is split into
// chunks (every kernel computes each (row, token) the same way for any batch size).
// So a request's output is identical alone or batched, after a preemption, and under
// self-speculative verification: the scheduler relies on it and tests check it.
//
// Weight storage: Q8_0 and Q4_0 stay quantized and are multiplied with Q8_0-quantized
// activations (integer dot products, as llama.cpp); F32 stays F32; F16, BF16 and Q4_K
// are converted to F32 at load. ModelOptions::quantize can requantize the F32/F16/BF16
// matrices to Q8_0 or Q4_0 at load (norm vectors always stay F32). On the CPU, Q8_0
// and Q4_0 matrices are repacked at load, 16 rows interleaved (Weight::x16,
// kernels/qgemm_x16.hpp: the same bytes, moved), for one kernel serving prefill and
// decode; a model on a GPU keeps the plain rows its backend uploads.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/device_model.hpp"
#include "engine/ggml_types.hpp"
#include "engine/kv_cache.hpp"
#include "engine/gguf.hpp"
#include "engine/llama_meta.hpp"
#include "engine/status.hpp"
#include "engine/thread_pool.hpp"

namespace reprise::engine {

struct ModelOptions {
    int n_threads = 1;
    // F32 (default): keep the file's types. Q8_0 / Q4_0: quantize float matrices to it.
    GgmlType quantize = GgmlType::F32;
    // Cpu (default here; the engine's default is Auto): where forward passes run.
    // Cuda fails the load when no device can take the model; Auto falls back to the
    // CPU and says why in device_note().
    Device device = Device::Cpu;
};

// One weight matrix [rows][cols] (GGUF ne = {cols, rows}) in F32, Q8_0 or Q4_0.
struct Weight {
    GgmlType type = GgmlType::F32;
    int rows = 0, cols = 0;
    std::vector<uint8_t> data;  // rows * row_bytes, or x16_bytes() when x16
    size_t row_bytes = 0;        // of one plain row
    // Q8_0/Q4_0 on the CPU: rows repacked 16 at a time at load (kernels/qgemm_x16.hpp).
    bool x16 = false;
};

// One sequence's share of a batched forward pass (Model::forward_batch).
struct BatchItem {
    KvSequence* kv = nullptr;        // positions [pos0, pos0 + n) are written (prepare()d here)
    const int32_t* tokens = nullptr; // n ids, embedded at layer 0; unused when `hidden` is set
    const float* hidden = nullptr;   // or n * n_embd: the residual stream entering layer_begin
    int n = 0;
    int pos0 = 0;                    // the tokens attend to positions [0, pos0 + t]
    int layer_begin = 0;             // 0, or the early-exit layer (verification of drafts)
    int n_logits = 0;                // logits for the last n_logits tokens (0..n) ...
    float* logits = nullptr;         // ... written here, n_logits * n_vocab
    float* hidden_out = nullptr;     // if set: n * n_embd, the residual stream after the pass's last layer
};

struct MatmulInput;  // model.cpp: a matmul input and its quantized forms

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

    int n_layer() const { return int(hp_.n_layer); }
    // A pool-backed single sequence for n_ctx positions (0: the training context length).
    // A block pool for this model's K/V shape. Both in the device's memory when the
    // model runs on one, and null when it has too little.
    std::unique_ptr<KvCache> new_kv_cache(int n_ctx = 0) const;
    std::unique_ptr<KvBlockPool> new_kv_pool(int block_size, int n_blocks) const;

    // Runs tokens[0..n) of one sequence at positions pos0..pos0+n-1 (the cache holds
    // 0..pos0-1) and writes logits: for every token (n * n_vocab) when all_logits,
    // else only the last (n_vocab). Errors (no crash) on bad token ids or a full cache.
    Status forward(KvCache& kv, const int32_t* tokens, int n, int pos0, float* logits, bool all_logits = false) const;

    // One pass over layers [item.layer_begin, layer_end) for every item (layer_end 0 =
    // all layers), then the final norm and the output head for the requested logits.
    // Layers run once for all items' tokens together. Every item's positions are
    // prepare()d in its sequence first; if the pool is short, nothing is computed and
    // the error says so. Sequence sizes are the caller's to set. Safe from several
    // threads on distinct sequences (the thread pool serialises their matmuls).
    Status forward_batch(BatchItem* items, int n_items, int layer_end = 0) const;

    ThreadPool* pool() const { return pool_.get(); }

    // Where the passes run: "cpu" or "cuda", the device's description ("" on the CPU),
    // and why an Auto load stayed on the CPU ("" otherwise).
    const char* device() const { return device_model_ ? "cuda" : "cpu"; }
    const DeviceInfo* device_info() const { return device_model_ ? &device_model_->info() : nullptr; }
    const std::string& device_note() const { return device_note_; }

    // The weights, for a device backend to upload (engine/cuda). A model on a device
    // drops its host copies of the matrices after the upload: data is then empty.
    struct Layer {
        std::vector<float> attn_norm, ffn_norm;
        Weight wq, wk, wv, wo, gate, up, down;
        std::vector<float> bq, bk, bv;     // qwen2: added to wq / wk / wv's outputs; empty otherwise
        std::vector<float> q_norm, k_norm; // qwen3: [head_dim] RMSNorm of each Q / K head; empty otherwise
    };
    const Layer& layer(int l) const { return layers_[size_t(l)]; }
    const Weight& token_embedding() const { return tok_embd_; }
    const Weight& output_head() const { return tied_ ? tok_embd_ : output_; }
    const std::vector<float>& output_norm() const { return output_norm_; }
    const std::vector<float>& rope_freqs() const { return rope_freqs_; }

private:
    Model() = default;
    Status forward_cpu(BatchItem* items, int n_items, int layer_end) const;
    std::unique_ptr<KvStorage> kv_storage(int block_size, int n_blocks, bool* ok) const;
    // Y[n][w.rows] = w * X[n][w.cols]; `in` holds X and its quantized forms (model.cpp).
    void matmul(const Weight& w, MatmulInput& in, float* Y) const;
    // Several matrices over one input (wq/wk/wv, gate/up; at most 4): one pool hand-off
    // when they are all x16 of one type.
    void matmuls(std::initializer_list<std::pair<const Weight*, float*>> ws, MatmulInput& in) const;
    void embed_row(int token, float* out) const;  // the token's embedding, dequantized

    LlamaHParams hp_;
    Weight tok_embd_, output_;
    bool tied_ = false;
    std::vector<float> output_norm_;
    std::vector<float> rope_freqs_;  // empty: no per-frequency factors
    std::vector<Layer> layers_;
    std::unique_ptr<ThreadPool> pool_;
    std::unique_ptr<DeviceModel> device_model_;  // null: the CPU path
    std::string device_note_;
};

}  // namespace reprise::engine
