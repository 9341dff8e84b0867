#pragma once
// llama2.c checkpoint (.bin, Karpathy's run.c "legacy" format) -> Llama GGUF.
//
// Format: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len; a negative vocab_size means a separate classifier), then float32 arrays:
// token_embedding [vocab][dim], rms_att [L][dim], wq [L][dim][dim], wk [L][kv_dim][dim],
// wv [L][kv_dim][dim], wo [L][dim][dim], rms_ffn [L][dim], w1 [L][hidden][dim],
// w2 [L][dim][hidden], w3 [L][hidden][dim], rms_final [dim], freq_cis_real and
// freq_cis_imag [seq_len][head_size/2] (skipped: RoPE is recomputed), wcls [vocab][dim]
// if unshared. Every matrix is [out][in] row-major = a GGUF tensor with ne = {in, out},
// so no transposition is needed. llama2.c's RoPE rotates adjacent pairs, GGUF's
// llama convention too, so no Q/K permutation either (HF checkpoints need one).
//
// Vocabulary: the checkpoint carries none and its own tokenizer.bin is not available
// for stories260K, so the GGUF gets a synthetic SentencePiece-style vocabulary of
// vocab_size entries laid out like llama2.c's sentencepiece vocabularies: 0 "<unk>",
// 1 "<s>" (BOS), 2 "</s>" (EOS), 3..258 the byte tokens "<0x00>".."<0xFF>", and
// placeholders "<tok_N>" (normal tokens, score 0) for the rest. Token ids are
// therefore meaningful, text is not.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ggml_types.hpp"
#include "engine/gguf_writer.hpp"
#include "engine/status.hpp"

namespace reprise::engine {

struct Llama2cConfig {
    int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
    bool shared_classifier = true;
};

// Parses and validates the header and the file size (which must match the weights).
Status llama2c_read_config(const uint8_t* data, size_t size, Llama2cConfig* cfg);

// Converts a checkpoint in memory to GGUF; `type` (F32, F16, Q8_0, Q4_0) applies to
// the 2-D matrices (Q8_0/Q4_0 need dim and hidden_dim multiples of 32).
Status llama2c_to_gguf(const uint8_t* data, size_t size, GgmlType type, GgufWriter* w);
Status llama2c_convert_file(const std::string& in_path, const std::string& out_path, GgmlType type);

}  // namespace reprise::engine
