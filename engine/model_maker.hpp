#pragma once
// Deterministic tiny Llama GGUF files for tests, benchmarks and the demo model: a given
// shape and weight type, a vocabulary (every tokenizer.* key copied from a vocabulary
// GGUF, or the small built-in one below), and seeded random weights.
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
#include <vector>

#include "engine/ggml_types.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_writer.hpp"
#include "engine/status.hpp"

namespace reprise::engine {

struct TinyLlamaShape {
    uint32_t n_embd = 64, n_ff = 192, n_layer = 2, n_head = 4, n_head_kv = 2, n_ctx = 256;
    GgmlType type = GgmlType::F32;  // of the 2-D matrices: F32, F16, Q8_0 or Q4_0 (norms stay F32)
    uint64_t seed = 1;
    float logit_scale = 8.0f;
    bool tie_output = false;
    float rope_freq_base = 10000.0f;
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

// Fills w with a complete llama GGUF (metadata + tensors). The vocabulary size is the
// length of vocab's tokenizer.ggml.tokens.
Status make_tiny_llama(const TinyLlamaShape& shape, const GgufFile& vocab, GgufWriter* w);

// Encodes an F32 row-major [rows][cols] matrix as `type` (F32, F16, Q8_0, Q4_0) and
// adds it (ne = {cols, rows}); cols must be a block multiple for Q8_0/Q4_0.
Status add_matrix(GgufWriter* w, const std::string& name, GgmlType type, const float* data, uint64_t rows, uint64_t cols);

// Writes llama.* hyper-parameter keys and general.architecture.
void set_llama_hparams(GgufWriter* w, const std::string& name, uint32_t n_ctx, uint32_t n_embd, uint32_t n_ff, uint32_t n_layer,
                       uint32_t n_head, uint32_t n_head_kv, float rope_freq_base, float rms_eps, uint32_t file_type);

}  // namespace reprise::engine
