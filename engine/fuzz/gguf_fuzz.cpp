// libFuzzer entry point for the GGUF reader: any input must parse to a value or an
// error, never a crash, leak or sanitizer report. Built by -DREPRISE_FUZZ=ON (clang);
// tests/engine runs the same function over a seed corpus with the normal build.
#include <cstddef>
#include <cstdint>

#include "engine/gguf_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    (void)reprise::engine::gguf_check_buffer(data, size);
    return 0;
}
