#include "engine/gguf_check.hpp"

#include <vector>

#include "engine/ggml_types.hpp"
#include "engine/gguf.hpp"
#include "engine/llama_meta.hpp"
#include "engine/tokenizer.hpp"

namespace reprise::engine {

Status gguf_check_buffer(const void* data, size_t size) {
    auto file = GgufFile::from_memory(data, size);
    if (!file) return file.status();
    const GgufFile& f = **file;

    // Touch every value so a bad bound would show under the sanitizers.
    volatile double sink = 0;
    for (const auto& kv : f.kvs()) {
        if (kv.type == GgufType::ARRAY && kv.arr_type != GgufType::STRING) {
            for (uint64_t i = 0; i < kv.arr_n; ++i) sink = sink + kv.float_at(i);
        } else if (kv.type == GgufType::ARRAY) {
            for (const auto& s : kv.strs) sink = sink + (s.empty() ? 0 : s.back());
        } else if (kv.type == GgufType::STRING) {
            sink = sink + (kv.str.empty() ? 0 : kv.str.back());
        } else {
            sink = sink + kv.float_at(0);
        }
    }
    // Dequantize the first row of each supported tensor, and read its last byte.
    std::vector<float> row;
    for (const auto& t : f.tensors()) {
        if (t.n_bytes > 0) sink = sink + t.data[t.n_bytes - 1];
        if (ggml_type_supported(t.type) && t.ne[0] > 0 && t.ne[0] <= (1u << 20) && t.n_bytes > 0) {
            row.resize(static_cast<size_t>(t.ne[0]));
            dequantize_row(t.type, t.data, row.data(), static_cast<int64_t>(t.ne[0]));
        }
    }

    std::string_view arch;
    if (f.get_string("general.architecture", &arch).ok() && (arch == "llama" || arch == "qwen2" || arch == "qwen3")) {
        LlamaHParams hp;
        if (Status s = llama_read_hparams(f, &hp); !s.ok()) return s;
        LlamaTensors lt;  // a vocab-only file (no tensors) is fine, as llama.cpp's vocab_only
        if (!f.tensors().empty())
            if (Status s = llama_find_tensors(f, hp, &lt); !s.ok()) return s;
    }

    if (f.find("tokenizer.ggml.model")) {
        auto tok = Tokenizer::from_gguf(f);
        if (!tok) return tok.status();
        // A fixed string with spaces, digits, punctuation, non-ASCII and a newline.
        const auto ids = (*tok)->encode(" Hello, world! 123 \xc3\xa9\xe4\xb8\xad\n", true, true);
        sink = sink + static_cast<double>((*tok)->decode(ids).size());
    }
    (void)sink;
    return Status();
}

}  // namespace reprise::engine
