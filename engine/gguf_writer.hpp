#pragma once
// Builds GGUF v3 files: metadata of every value type and tensors laid out with
// alignment padding, as llama.cpp writes them. Used by tests (round trips, the fuzz
// corpus) and by model generators/converters.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/gguf.hpp"
#include "engine/status.hpp"

namespace reprise::engine {

class GgufWriter {
public:
    // Setting a key again replaces its value (keeping its position).
    void set_u8(std::string_view key, uint8_t v);
    void set_i8(std::string_view key, int8_t v);
    void set_u16(std::string_view key, uint16_t v);
    void set_i16(std::string_view key, int16_t v);
    void set_u32(std::string_view key, uint32_t v);
    void set_i32(std::string_view key, int32_t v);
    void set_u64(std::string_view key, uint64_t v);
    void set_i64(std::string_view key, int64_t v);
    void set_f32(std::string_view key, float v);
    void set_f64(std::string_view key, double v);
    void set_bool(std::string_view key, bool v);
    void set_string(std::string_view key, std::string_view v);
    // An array of n scalars of type elem, packed little endian at data.
    Status set_array(std::string_view key, GgufType elem, const void* data, size_t n);
    void set_array_strings(std::string_view key, const std::vector<std::string>& v);
    // general.alignment (a power of two); also stored as metadata.
    Status set_alignment(uint32_t alignment);
    // For tests of the reader's version handling only.
    void set_version(uint32_t v) { version_ = v; }

    // ne in ggml order (ne[0] = row length); data must hold exactly the tensor's bytes.
    Status add_tensor(std::string_view name, uint32_t ggml_type, const std::vector<uint64_t>& ne, const void* data,
                      size_t n_bytes);

    std::vector<uint8_t> to_bytes() const;
    Status write_file(const std::string& path) const;

private:
    struct KV {
        std::string key;
        std::vector<uint8_t> value;  // type id + serialized value
    };
    struct Tensor {
        std::string name;
        uint32_t type;
        std::vector<uint64_t> ne;
        std::vector<uint8_t> data;
    };
    void set_raw(std::string_view key, GgufType t, const void* v, size_t n);
    void put(std::string_view key, std::vector<uint8_t> value);

    uint32_t version_ = 3;
    uint32_t alignment_ = kGgufDefaultAlignment;
    std::vector<KV> kvs_;
    std::vector<Tensor> tensors_;
};

}  // namespace reprise::engine
