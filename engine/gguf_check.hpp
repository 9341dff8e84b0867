#pragma once
// One call that does everything a loader does with an untrusted GGUF buffer: parse,
// walk all metadata and tensor data, read the Llama hyper-parameters and tensor table
// when general.architecture is llama, qwen2 or qwen3, build the tokenizer when a vocabulary is present
// and run it once. Shared by the libFuzzer target and the corpus test, so both
// exercise the same code; returns the first error (ok when the file is fully usable).
#include <cstddef>

#include "engine/status.hpp"

namespace reprise::engine {

Status gguf_check_buffer(const void* data, size_t size);

}  // namespace reprise::engine
