#pragma once
// GGUF files made with GgufWriter for the tests and the fuzzer's seed corpus: valid
// files, a tiny Llama, and corrupted variants, each with the result the reader must
// give (empty: success; otherwise a substring of the error message).
#include <cstdint>
#include <string>
#include <vector>

#include "engine/gguf_writer.hpp"

namespace engine_test {

struct CorpusCase {
    std::string name;  // file name in tests/engine/gguf_corpus
    std::vector<uint8_t> bytes;
    std::string expect;
};

std::vector<CorpusCase> gguf_corpus_cases();

// A tiny Llama (n_embd 32, 4 heads, 2 KV heads, n_ff 64, 2 layers, a small SPM
// vocabulary) with its matrices stored as `type`; norms stay F32.
struct TinyLlamaOptions {
    uint32_t type = 0;      // a GgmlType id (F32 by default)
    bool tied = false;      // leave out output.weight
    std::string drop;       // leave out this tensor
    std::string misshape;   // give this tensor a wrong second dimension
};
reprise::engine::GgufWriter tiny_llama(const TinyLlamaOptions& o);

// Deterministic pseudo-random floats in [-1, 1).
std::vector<float> test_floats(size_t n, uint32_t seed);

}  // namespace engine_test
