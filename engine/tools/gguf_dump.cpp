// gguf_dump FILE: prints a GGUF file's header, metadata (arrays abbreviated) and
// tensor table, or the reader's error. A debugging aid for model files.
#include <cstdio>
#include <string>

#include "engine/ggml_types.hpp"
#include "engine/gguf.hpp"

using namespace reprise::engine;

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s FILE.gguf\n", argv[0]);
        return 2;
    }
    auto f = GgufFile::open(argv[1]);
    if (!f) {
        std::fprintf(stderr, "%s\n", f.error().c_str());
        return 1;
    }
    const GgufFile& g = **f;
    std::printf("version %u, alignment %u, %zu kv, %zu tensors, data at %llu\n", g.version(), g.alignment(),
                g.kvs().size(), g.tensors().size(), static_cast<unsigned long long>(g.data_offset()));
    for (const auto& kv : g.kvs()) {
        std::printf("%.*s: %s", static_cast<int>(kv.key.size()), kv.key.data(), gguf_type_name(kv.type));
        if (kv.type == GgufType::STRING) {
            std::printf(" = \"%.*s\"", static_cast<int>(std::min<size_t>(kv.str.size(), 200)), kv.str.data());
        } else if (kv.type == GgufType::ARRAY) {
            std::printf(" of %llu %s", static_cast<unsigned long long>(kv.arr_n), gguf_type_name(kv.arr_type));
            for (uint64_t i = 0; i < kv.arr_n && i < 8; ++i) {
                if (kv.arr_type == GgufType::STRING)
                    std::printf(" \"%.*s\"", static_cast<int>(kv.strs[i].size()), kv.strs[i].data());
                else if (kv.arr_type == GgufType::FLOAT32 || kv.arr_type == GgufType::FLOAT64)
                    std::printf(" %g", kv.float_at(i));
                else
                    std::printf(" %lld", static_cast<long long>(kv.int_at(i)));
            }
        } else if (kv.is_float()) {
            std::printf(" = %g", kv.float_at(0));
        } else {
            std::printf(" = %lld", static_cast<long long>(kv.int_at(0)));
        }
        std::printf("\n");
    }
    for (const auto& t : g.tensors()) {
        std::printf("%.*s %s [", static_cast<int>(t.name.size()), t.name.data(), std::string(ggml_type_name(t.type)).c_str());
        for (uint32_t d = 0; d < t.n_dims; ++d) std::printf("%s%llu", d ? ", " : "", static_cast<unsigned long long>(t.ne[d]));
        std::printf("] @%llu\n", static_cast<unsigned long long>(t.offset));
    }
    return 0;
}
