#include "engine/gguf_writer.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/ggml_types.hpp"

namespace reprise::engine {

namespace {
template <typename T>
void append(std::vector<uint8_t>& out, const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
}
void append_str(std::vector<uint8_t>& out, std::string_view s) {
    append(out, uint64_t{s.size()});
    out.insert(out.end(), s.begin(), s.end());
}
}  // namespace

void GgufWriter::put(std::string_view key, std::vector<uint8_t> value) {
    for (auto& kv : kvs_)
        if (kv.key == key) {
            kv.value = std::move(value);
            return;
        }
    kvs_.push_back({std::string(key), std::move(value)});
}

void GgufWriter::set_raw(std::string_view key, GgufType t, const void* v, size_t n) {
    std::vector<uint8_t> b;
    append(b, static_cast<uint32_t>(t));
    const auto* p = static_cast<const uint8_t*>(v);
    b.insert(b.end(), p, p + n);
    put(key, std::move(b));
}

void GgufWriter::set_u8(std::string_view k, uint8_t v) { set_raw(k, GgufType::UINT8, &v, 1); }
void GgufWriter::set_i8(std::string_view k, int8_t v) { set_raw(k, GgufType::INT8, &v, 1); }
void GgufWriter::set_u16(std::string_view k, uint16_t v) { set_raw(k, GgufType::UINT16, &v, 2); }
void GgufWriter::set_i16(std::string_view k, int16_t v) { set_raw(k, GgufType::INT16, &v, 2); }
void GgufWriter::set_u32(std::string_view k, uint32_t v) { set_raw(k, GgufType::UINT32, &v, 4); }
void GgufWriter::set_i32(std::string_view k, int32_t v) { set_raw(k, GgufType::INT32, &v, 4); }
void GgufWriter::set_u64(std::string_view k, uint64_t v) { set_raw(k, GgufType::UINT64, &v, 8); }
void GgufWriter::set_i64(std::string_view k, int64_t v) { set_raw(k, GgufType::INT64, &v, 8); }
void GgufWriter::set_f32(std::string_view k, float v) { set_raw(k, GgufType::FLOAT32, &v, 4); }
void GgufWriter::set_f64(std::string_view k, double v) { set_raw(k, GgufType::FLOAT64, &v, 8); }
void GgufWriter::set_bool(std::string_view k, bool v) {
    const uint8_t b = v ? 1 : 0;
    set_raw(k, GgufType::BOOL, &b, 1);
}

void GgufWriter::set_string(std::string_view key, std::string_view v) {
    std::vector<uint8_t> b;
    append(b, static_cast<uint32_t>(GgufType::STRING));
    append_str(b, v);
    put(key, std::move(b));
}

Status GgufWriter::set_array(std::string_view key, GgufType elem, const void* data, size_t n) {
    const size_t es = gguf_type_size(elem);
    if (es == 0) return Status::error(std::string("set_array: element type ") + gguf_type_name(elem) + " is not a scalar");
    std::vector<uint8_t> b;
    append(b, static_cast<uint32_t>(GgufType::ARRAY));
    append(b, static_cast<uint32_t>(elem));
    append(b, uint64_t{n});
    const auto* p = static_cast<const uint8_t*>(data);
    b.insert(b.end(), p, p + n * es);
    put(key, std::move(b));
    return Status();
}

void GgufWriter::set_array_strings(std::string_view key, const std::vector<std::string>& v) {
    std::vector<uint8_t> b;
    append(b, static_cast<uint32_t>(GgufType::ARRAY));
    append(b, static_cast<uint32_t>(GgufType::STRING));
    append(b, uint64_t{v.size()});
    for (const auto& s : v) append_str(b, s);
    put(key, std::move(b));
}

Status GgufWriter::set_alignment(uint32_t alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        return Status::error("alignment " + std::to_string(alignment) + " is not a power of two");
    alignment_ = alignment;
    set_u32("general.alignment", alignment);
    return Status();
}

Status GgufWriter::add_tensor(std::string_view name, uint32_t ggml_type, const std::vector<uint64_t>& ne, const void* data,
                              size_t n_bytes) {
    const std::string what = "tensor '" + std::string(name) + "'";
    if (ne.empty() || ne.size() > static_cast<size_t>(kGgufMaxDims)) return Status::error(what + ": needs 1 to 4 dimensions");
    for (const auto& t : tensors_)
        if (t.name == name) return Status::error("duplicate " + what);
    uint64_t rows = 1;
    for (size_t i = 1; i < ne.size(); ++i)
        if (__builtin_mul_overflow(rows, ne[i], &rows)) return Status::error(what + ": size overflows");
    uint64_t row_bytes, expect;
    if (!ggml_row_size(ggml_type, ne[0], &row_bytes))
        return Status::error(what + ": row length " + std::to_string(ne[0]) + " does not fit type " +
                             std::string(ggml_type_name(ggml_type)));
    if (__builtin_mul_overflow(row_bytes, rows, &expect) || expect != n_bytes)
        return Status::error(what + ": data has " + std::to_string(n_bytes) + " bytes, the shape needs " + std::to_string(expect));
    const auto* p = static_cast<const uint8_t*>(data);
    tensors_.push_back({std::string(name), ggml_type, ne, std::vector<uint8_t>(p, p + n_bytes)});
    return Status();
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
    std::vector<uint8_t> out;
    out.reserve(1024);  // also keeps GCC 12's -Wstringop-overflow false positive quiet
    for (char ch : {'G', 'G', 'U', 'F'}) out.push_back(static_cast<uint8_t>(ch));
    append(out, version_);
    append(out, uint64_t{tensors_.size()});
    append(out, uint64_t{kvs_.size()});
    for (const auto& kv : kvs_) {
        append_str(out, kv.key);
        out.insert(out.end(), kv.value.begin(), kv.value.end());
    }
    auto pad = [&](uint64_t n) { return (n + alignment_ - 1) / alignment_ * alignment_; };
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
        append_str(out, t.name);
        append(out, static_cast<uint32_t>(t.ne.size()));
        for (uint64_t d : t.ne) append(out, d);
        append(out, t.type);
        append(out, offset);
        offset = pad(offset + t.data.size());
    }
    if (!tensors_.empty()) {
        out.resize(pad(out.size()), 0);
        for (const auto& t : tensors_) {
            out.insert(out.end(), t.data.begin(), t.data.end());
            out.resize(pad(out.size()), 0);
        }
    }
    return out;
}

Status GgufWriter::write_file(const std::string& path) const {
    const auto bytes = to_bytes();
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return Status::error("cannot create " + path + ": " + std::strerror(errno));
    const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    if (std::fclose(f) != 0 || !ok) return Status::error("cannot write " + path);
    return Status();
}

}  // namespace reprise::engine
