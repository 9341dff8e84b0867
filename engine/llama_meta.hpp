#pragma once
// The Llama-family architectures as GGUF describes them (llama, qwen2, qwen3):
// hyper-parameters from {arch}.* metadata and the tensor table, with every tensor's
// shape checked against them so a loader can trust what it gets (or report exactly
// which tensor is missing or mis-shaped). Errors start with the architecture's name.
#include <cstdint>
#include <vector>

#include "engine/gguf.hpp"
#include "engine/status.hpp"

namespace reprise::engine {

// The architectures the engine runs (general.architecture); their metadata keys are
// prefixed with the name ("llama.", "qwen2.", "qwen3.").
enum class ModelArch { Llama, Qwen2, Qwen3 };
const char* model_arch_name(ModelArch a);  // "llama", "qwen2", "qwen3"

struct LlamaHParams {
    ModelArch arch = ModelArch::Llama;
    uint32_t n_ctx_train = 0;   // llama.context_length
    uint32_t n_embd = 0;        // llama.embedding_length
    uint32_t n_layer = 0;       // llama.block_count
    uint32_t n_ff = 0;          // llama.feed_forward_length
    uint32_t n_head = 0;        // llama.attention.head_count
    uint32_t n_head_kv = 0;     // llama.attention.head_count_kv (default: n_head)
    uint32_t n_rot = 0;         // llama.rope.dimension_count (default: head dim)
    uint32_t n_vocab = 0;       // length of tokenizer.ggml.tokens (else token_embd rows)
    float rope_freq_base = 10000.0f;  // llama.rope.freq_base
    float rope_freq_scale = 1.0f;     // 1 / llama.rope.scaling.factor when scaling.type is "linear"
    float rms_eps = 1e-5f;            // llama.attention.layer_norm_rms_epsilon
    // {arch}.attention.key_length (= value_length): qwen3's head size need not be
    // n_embd / n_head. 0: n_embd / n_head.
    uint32_t n_head_dim = 0;
    // RoPE pairs: false, llama's adjacent (x[2j], x[2j+1]); true, NeoX's half-split
    // (x[j], x[j + n_rot/2]) as qwen2 and qwen3 use (llama.cpp's LLAMA_ROPE_TYPE_NEOX).
    bool rope_neox = false;

    uint32_t head_dim() const { return n_head_dim ? n_head_dim : n_embd / n_head; }
    uint32_t n_embd_q() const { return head_dim() * n_head; }      // Q width (and wo's input)
    uint32_t n_embd_kv() const { return head_dim() * n_head_kv; }  // K/V width under GQA
};

struct LlamaLayerTensors {
    const GgufTensorInfo* attn_norm = nullptr;    // [n_embd]
    const GgufTensorInfo* wq = nullptr;           // [n_embd, n_embd_q]
    const GgufTensorInfo* wk = nullptr;           // [n_embd, n_embd_kv]
    const GgufTensorInfo* wv = nullptr;           // [n_embd, n_embd_kv]
    const GgufTensorInfo* wo = nullptr;           // [n_embd_q, n_embd]
    const GgufTensorInfo* ffn_norm = nullptr;     // [n_embd]
    const GgufTensorInfo* ffn_gate = nullptr;     // [n_embd, n_ff]
    const GgufTensorInfo* ffn_up = nullptr;       // [n_embd, n_ff]
    const GgufTensorInfo* ffn_down = nullptr;     // [n_ff, n_embd]
    // qwen2: biases of wq / wk / wv ([n_embd_q], [n_embd_kv], [n_embd_kv]); else null
    // (a bias in a llama or qwen3 file is refused, by name).
    const GgufTensorInfo* bq = nullptr;
    const GgufTensorInfo* bk = nullptr;
    const GgufTensorInfo* bv = nullptr;
    // qwen3: per-head RMSNorm weights of Q and K ([head_dim] each); else null.
    const GgufTensorInfo* q_norm = nullptr;
    const GgufTensorInfo* k_norm = nullptr;
};

struct LlamaTensors {
    const GgufTensorInfo* tok_embd = nullptr;     // [n_embd, n_vocab]
    const GgufTensorInfo* output_norm = nullptr;  // [n_embd]
    const GgufTensorInfo* output = nullptr;       // [n_embd, n_vocab]; == tok_embd when tied
    bool tied_output = false;
    // Optional [n_rot/2] F32: Llama 3.1+'s "llama3" RoPE scaling, written by llama.cpp's
    // converter as per-frequency divisors (ggml_rope_ext's freq_factors).
    const GgufTensorInfo* rope_freqs = nullptr;
    std::vector<LlamaLayerTensors> layers;
};

// Shapes are in ggml order (ne[0] first). Errors name the key or tensor; an
// architecture other than llama, qwen2 and qwen3 is refused by name.
Status llama_read_hparams(const GgufFile& f, LlamaHParams* hp);
// Finds and shape-checks every tensor; also rejects element types the engine cannot
// dequantize.
Status llama_find_tensors(const GgufFile& f, const LlamaHParams& hp, LlamaTensors* t);

}  // namespace reprise::engine
