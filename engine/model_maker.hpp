#pragma once
// Deterministic tiny Llama-family GGUF files (llama, qwen2, qwen3) for tests, benchmarks
// and the demo model: a given shape and weight type (or llama.cpp's Q4_K_M / Q5_K_M
// per-tensor mix), a vocabulary (every tokenizer.* key copied from a vocabulary GGUF,
// or the small built-in one below), and seeded random weights.
//
// Architectures: qwen2 adds Q/K/V biases (blk.N.attn_{q,k,v}.bias, uniform, std 0.3);
// qwen3 adds per-head Q/K RMSNorm weights (blk.N.attn_{q,k}_norm.weight, [head_dim],
// 1 +- 0.1 like the other norms) and may have a head size other than n_embd / n_head
// (head_dim, written as {arch}.attention.key_length / value_length). Both use NeoX
// RoPE (implied by the architecture) and a RoPE base of 1e6 unless told otherwise.
// Their extra tensors are drawn after each layer's matrices, so a llama file is byte
// for byte what it was before they existed. When the vocabulary has <|im_start|>, a
// qwen file carries the real Qwen2.5 (qwen2) or Qwen3 (qwen3) chat template.
//
// Weight scaling (why the top token wins clearly): matrices are uniform with standard
// deviation 1/sqrt(fan_in), so every projection keeps activations at unit scale and the
// residual stream stays O(1) through the layers; norm weights are 1 +- 0.1. The output
// head (a separate output.weight unless tie_output) has standard deviation
// logit_scale/sqrt(n_embd): after the final RMSNorm the hidden state has unit RMS, so
// logits are roughly N(0, logit_scale^2) across the vocabulary. With logit_scale = 8 and
// 32,000 tokens the expected gap between the top two logits is ~8/sqrt(2 ln 32000) ~ 1.8
// (the top-1 logit is ~4.5 sigma above the mean). Measured on the default shape
// (n_embd 64): Q8_0 moves logits by up to ~0.6 (1.8% of the largest), Q4_0 by up to ~7,
// so greedy rollouts agree with F32 on ~95% (Q8_0) / ~70% (Q4_0) of the steps — see
// tests/engine/model_test.cpp. A wider model averages quantization noise better.
// The RNG is splitmix64 -> uniform floats via exact integer arithmetic, so the same
// seed gives bit-identical files on every platform.
//
// SYNTHETIC early-exit models (late_layer_scale < 1): for benchmarking self-speculative
// decoding (speculative.hpp) without trained weights. Layers l >= late_from get their
// attention output (attn_output) and FFN down (ffn_down) projections multiplied by
// late_layer_scale, so their residual updates are late_layer_scale times smaller: the
// stream after layer late_from (and any later exit) is close to the final one, and an
// early exit at E >= late_from agrees with the full model on most greedy tokens. The
// same random draws are made (the scale multiplies them), so only those two matrices
// of those layers differ from the unscaled model with the same seed, and the file
// records reprise.late_layer_scale / reprise.late_from. This is NOT how trained models
// behave: it is a knob that makes the draft model good on purpose, to measure the
// engine's speculation overhead and best-case speed-up; for acceptance on real
// weights use a trained checkpoint (bench/engine/batching.cpp section d). Off by
// default (scale 1): the output is bit-identical to a model made without the option.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/ggml_types.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_writer.hpp"
#include "engine/llama_meta.hpp"
#include "engine/status.hpp"

namespace reprise::engine {

// How the 2-D matrices are typed: all `type` (Pure), or llama.cpp's mixes.
enum class QuantMix { Pure, Q4_K_M, Q5_K_M };

struct TinyLlamaShape {
    ModelArch arch = ModelArch::Llama;
    uint32_t n_embd = 64, n_ff = 192, n_layer = 2, n_head = 4, n_head_kv = 2, n_ctx = 256;
    uint32_t head_dim = 0;          // qwen3 only: 0 = n_embd / n_head
    // Of the 2-D matrices (norms and biases stay F32): F32, F16, BF16, Q8_0, Q4_0, Q4_1,
    // Q5_0, Q5_1, Q4_K, Q5_K or Q6_K. Ignored when mix is not Pure.
    GgmlType type = GgmlType::F32;
    QuantMix mix = QuantMix::Pure;
    uint64_t seed = 1;
    float logit_scale = 8.0f;
    bool tie_output = false;
    float rope_freq_base = 0.0f;    // 0: the architecture's usual base (llama 10000, qwen2/qwen3 1e6)
    float rms_eps = 1e-5f;
    std::string name = "reprise-tiny-llama";  // general.name
    // Synthetic early-exit model (see above): attn_output and ffn_down of layers
    // >= late_from scaled by late_layer_scale. 1 = off (the default).
    float late_layer_scale = 1.0f;
    uint32_t late_from = 0;
};

// The built-in vocabulary, so a demo model can be made on a machine without any
// vocabulary file (the real ones are test fixtures that never enter the tree). A GPT-2
// style byte-level BPE ("gpt2" model, "gpt-2" pre-tokenizer) that Tokenizer loads:
//   ids 0..255     the 256 bytes (id b = byte b, in GPT-2's byte-to-unicode spelling), so
//                  any byte string encodes and decodes back exactly;
//   then           one token per merge, in rank order: merges learnt by a tiny BPE
//                  trainer over an embedded list of common English words (every listed
//                  word, with its leading space, ends up a single token);
//   last three     <|endoftext|>, <|im_start|>, <|im_end|> (control tokens).
// ChatML like Qwen2: eos = <|im_end|> (so a chat reply stops there), bos = pad =
// <|endoftext|> with add_bos_token false, and tokenizer.chat_template the standard
// ChatML Jinja template (detected as "chatml" by chat_template.hpp).
// Deterministic: the same keys and values on every build and platform.
void set_builtin_vocab(GgufWriter* w);
// The built-in vocabulary as a metadata-only GGUF, for make_tiny_llama's `vocab`
// argument: parse it with GgufFile::from_memory (keep the bytes alive while in use).
std::vector<uint8_t> builtin_vocab_gguf();

// Copies every tokenizer.* key of `vocab` into w.
Status copy_tokenizer_metadata(const GgufFile& vocab, GgufWriter* w);

// Fills w with a complete GGUF of shape.arch (metadata + tensors). The vocabulary
// size is the length of vocab's tokenizer.ggml.tokens.
Status make_tiny_llama(const TinyLlamaShape& shape, const GgufFile& vocab, GgufWriter* w);

// The type of the matrix `name` ("token_embd.weight", "output.weight" or
// "blk.N.<tensor>.weight", layer N) with `cols` elements per row, in a model of shape s:
//   Pure: s.type.
//   Q4_K_M / Q5_K_M, as llama.cpp's llama_tensor_get_type (src/llama-quant.cpp):
//     output.weight, and token_embd.weight when the output is tied: Q6_K, or Q8_0 when
//       cols is not a multiple of 256;
//     attn_v and ffn_down of layer i: Q6_K when use_more_bits(i, n_layer), that is
//       i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2; otherwise the base type;
//     everything else, token_embd included when not tied: Q4_K (Q5_K for Q5_K_M).
// Then llama.cpp's fallback for K-quant rows that are not a multiple of 256:
// Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0 (F16 if cols is not even a multiple of 32).
GgmlType model_tensor_type(const TinyLlamaShape& s, const std::string& name, int layer, uint64_t cols);

// llama.cpp's llama_ftype (general.file_type) for a shape's typing: 0 F32, 1 F16,
// 2 Q4_0, 3 Q4_1, 7 Q8_0, 8 Q5_0, 9 Q5_1, 14 Q4_K_S (for pure Q4_K: llama.cpp has no
// pure K-quant file type), 15 Q4_K_M, 16 Q5_K_S (pure Q5_K), 17 Q5_K_M, 18 Q6_K, 32 BF16.
uint32_t model_file_type(const TinyLlamaShape& s);

// The real chat templates the generated qwen files carry: Qwen2.5-Instruct's (qwen2)
// and Qwen3's (qwen3), from the models' tokenizer_config.json; "" for llama.
std::string_view qwen_chat_template(ModelArch arch);

// Encodes an F32 row-major [rows][cols] matrix as `type` (any type quantize_row
// writes) and adds it (ne = {cols, rows}); cols must be a multiple of the block size.
Status add_matrix(GgufWriter* w, const std::string& name, GgmlType type, const float* data, uint64_t rows, uint64_t cols);

// Writes llama.* hyper-parameter keys and general.architecture.
void set_llama_hparams(GgufWriter* w, const std::string& name, uint32_t n_ctx, uint32_t n_embd, uint32_t n_ff, uint32_t n_layer,
                       uint32_t n_head, uint32_t n_head_kv, float rope_freq_base, float rms_eps, uint32_t file_type);

}  // namespace reprise::engine
