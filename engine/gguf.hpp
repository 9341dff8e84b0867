#pragma once
// GGUF (v3, and v2 which has the same layout) reader. The file is untrusted: every
// count, size and offset is checked against the buffer with overflow-safe arithmetic,
// and problems come back as a Status naming the key/tensor and the byte offset.
//
// Zero-copy: keys, strings and tensor data are views into the buffer, so a GgufFile
// must outlive whatever it hands out. open() maps the file read-only (MAP_PRIVATE);
// from_memory() borrows a caller's buffer (the fuzzer and tests use it).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.hpp"

namespace reprise::engine {

enum class GgufType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
    BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GgufType t);
// Bytes of one scalar of this type; 0 for STRING/ARRAY/unknown.
size_t gguf_type_size(GgufType t);

constexpr uint32_t kGgufDefaultAlignment = 32;
constexpr int kGgufMaxDims = 4;

struct GgufKV {
    std::string_view key;
    GgufType type;
    // Scalars (type not STRING/ARRAY): the value's bytes (little endian, unaligned).
    const uint8_t* data = nullptr;
    std::string_view str;                // type == STRING
    GgufType arr_type = GgufType::UINT8; // type == ARRAY: element type
    uint64_t arr_n = 0;                  // type == ARRAY: element count
    std::vector<std::string_view> strs;  // type == ARRAY of STRING (data unused)
    // ARRAY of scalars: data points at arr_n packed elements.

    // Scalar readers (any integer type converts; range is checked by the typed getters).
    bool is_integer() const;
    bool is_float() const;
    // Element i of a numeric array (or the scalar itself when i == 0 and not an array),
    // as int64/double; the caller has checked the type and bounds.
    int64_t int_at(uint64_t i) const;
    double float_at(uint64_t i) const;
};

struct GgufTensorInfo {
    std::string_view name;
    uint32_t n_dims = 0;
    uint64_t ne[kGgufMaxDims] = {1, 1, 1, 1};  // ggml order: ne[0] is the row length
    uint32_t type = 0;                          // a GgmlType id
    uint64_t offset = 0;                        // relative to the data section
    uint64_t n_elements = 0;
    uint64_t n_bytes = 0;
    const uint8_t* data = nullptr;              // inside the buffer, bounds checked
};

class GgufFile {
public:
    static Result<std::unique_ptr<GgufFile>> open(const std::string& path);
    // Parses a caller-owned buffer; it must stay alive and unchanged while in use.
    static Result<std::unique_ptr<GgufFile>> from_memory(const void* data, size_t size);
    ~GgufFile();
    GgufFile(const GgufFile&) = delete;
    GgufFile& operator=(const GgufFile&) = delete;

    uint32_t version() const { return version_; }
    uint32_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  // of the data section in the file
    size_t size() const { return size_; }

    const std::vector<GgufKV>& kvs() const { return kvs_; }
    const GgufKV* find(std::string_view key) const;

    // Typed getters: an error names the key and what was found. Integers convert
    // between widths when the value fits.
    Status get_u64(std::string_view key, uint64_t* out) const;
    Status get_u32(std::string_view key, uint32_t* out) const;
    Status get_i64(std::string_view key, int64_t* out) const;
    Status get_f32(std::string_view key, float* out) const;  // FLOAT32 or FLOAT64
    Status get_bool(std::string_view key, bool* out) const;
    Status get_string(std::string_view key, std::string_view* out) const;
    // An ARRAY whose elements have the given type (STRING, or a scalar type).
    Status get_array(std::string_view key, GgufType elem, const GgufKV** out) const;

    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find_tensor(std::string_view name) const;

private:
    GgufFile() = default;
    Status parse();

    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    bool mapped_ = false;
    uint32_t version_ = 0;
    uint32_t alignment_ = kGgufDefaultAlignment;
    uint64_t data_offset_ = 0;
    std::vector<GgufKV> kvs_;
    std::vector<GgufTensorInfo> tensors_;
};

}  // namespace reprise::engine
