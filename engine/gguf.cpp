#include "engine/gguf.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "engine/ggml_types.hpp"

namespace reprise::engine {

namespace {

constexpr uint32_t kMaxArrayNesting = 0;  // ggml rejects arrays of arrays; so do we

std::string at(size_t off) { return " at offset " + std::to_string(off); }

// A bounds-checked cursor over the buffer. Reads fail (and remember why) instead of
// running past the end; callers test the returned bool.
struct Cursor {
    const uint8_t* p;
    size_t size;
    size_t pos = 0;
    std::string err;

    size_t left() const { return size - pos; }
    bool fail(std::string msg) {
        if (err.empty()) err = std::move(msg);
        return false;
    }
    bool need(uint64_t n, const std::string& what) {
        if (n > left()) return fail("truncated: " + what + " needs " + std::to_string(n) + " bytes" + at(pos) +
                                    ", file has " + std::to_string(left()) + " left");
        return true;
    }
    template <typename T>
    bool read(T* out, const std::string& what) {
        if (!need(sizeof(T), what)) return false;
        std::memcpy(out, p + pos, sizeof(T));
        pos += sizeof(T);
        return true;
    }
    bool read_str(std::string_view* out, const std::string& what) {
        uint64_t n;
        if (!read(&n, what + " (string length)")) return false;
        if (!need(n, what + " (string of " + std::to_string(n) + " bytes)")) return false;
        *out = std::string_view(reinterpret_cast<const char*>(p + pos), static_cast<size_t>(n));
        pos += static_cast<size_t>(n);
        return true;
    }
};

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

std::string quoted(std::string_view s) {
    // Keys/names come from the file: keep messages printable and short.
    std::string o = "'";
    for (char c : s.substr(0, 80)) o += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (s.size() > 80) o += "...";
    return o + "'";
}

}  // namespace

const char* gguf_type_name(GgufType t) {
    static const char* names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                  "bool", "string", "array", "uint64", "int64", "float64"};
    const auto i = static_cast<uint32_t>(t);
    return i < sizeof(names) / sizeof(names[0]) ? names[i] : "unknown";
}

size_t gguf_type_size(GgufType t) {
    switch (t) {
        case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
        case GgufType::UINT16: case GgufType::INT16: return 2;
        case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
        case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
        default: return 0;
    }
}

namespace {
template <typename T>
T load(const uint8_t* p) { T v; std::memcpy(&v, p, sizeof(T)); return v; }

int64_t int_of(GgufType t, const uint8_t* p) {
    switch (t) {
        case GgufType::UINT8: return load<uint8_t>(p);
        case GgufType::INT8: return load<int8_t>(p);
        case GgufType::UINT16: return load<uint16_t>(p);
        case GgufType::INT16: return load<int16_t>(p);
        case GgufType::UINT32: return load<uint32_t>(p);
        case GgufType::INT32: return load<int32_t>(p);
        case GgufType::UINT64: {  // saturate: the typed getters reject values above INT64_MAX
            const uint64_t v = load<uint64_t>(p);
            return v > uint64_t(std::numeric_limits<int64_t>::max()) ? -1 : int64_t(v);
        }
        case GgufType::INT64: return load<int64_t>(p);
        case GgufType::BOOL: return load<uint8_t>(p) != 0;
        default: return 0;
    }
}

double float_of(GgufType t, const uint8_t* p) {
    if (t == GgufType::FLOAT32) return load<float>(p);
    if (t == GgufType::FLOAT64) return load<double>(p);
    return static_cast<double>(int_of(t, p));
}

bool is_int_type(GgufType t) {
    switch (t) {
        case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
        case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64: return true;
        default: return false;
    }
}
}  // namespace

bool GgufKV::is_integer() const { return is_int_type(type); }
bool GgufKV::is_float() const { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }

int64_t GgufKV::int_at(uint64_t i) const {
    const GgufType t = type == GgufType::ARRAY ? arr_type : type;
    return int_of(t, data + i * gguf_type_size(t));
}

double GgufKV::float_at(uint64_t i) const {
    const GgufType t = type == GgufType::ARRAY ? arr_type : type;
    return float_of(t, data + i * gguf_type_size(t));
}

Result<std::unique_ptr<GgufFile>> GgufFile::open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::error("gguf: cannot open " + path + ": " + std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        return Status::error("gguf: cannot stat " + path + ": " + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        return Status::error("gguf: " + path + " is not a regular file");
    }
    const size_t size = static_cast<size_t>(st.st_size);
    std::unique_ptr<GgufFile> f(new GgufFile());
    if (size > 0) {
        // MAP_PRIVATE + PROT_READ: the file is never written through the mapping.
        void* m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            const int e = errno;
            ::close(fd);
            return Status::error("gguf: cannot mmap " + path + ": " + std::strerror(e));
        }
        f->base_ = static_cast<const uint8_t*>(m);
        f->mapped_ = true;
    }
    ::close(fd);  // the mapping keeps the file alive
    f->size_ = size;
    if (Status s = f->parse(); !s.ok()) return Status::error("gguf: " + path + ": " + s.message());
    return f;
}

Result<std::unique_ptr<GgufFile>> GgufFile::from_memory(const void* data, size_t size) {
    std::unique_ptr<GgufFile> f(new GgufFile());
    f->base_ = static_cast<const uint8_t*>(data);
    f->size_ = data ? size : 0;
    if (Status s = f->parse(); !s.ok()) return Status::error("gguf: " + s.message());
    return f;
}

GgufFile::~GgufFile() {
    if (mapped_) munmap(const_cast<uint8_t*>(base_), size_);
}

Status GgufFile::parse() {
    Cursor c{base_, size_, 0, {}};
    char magic[4];
    if (!c.read(&magic, "magic")) return Status::error(c.err);
    if (std::memcmp(magic, "GGUF", 4) != 0) return Status::error("bad magic (not a GGUF file)");
    if (!c.read(&version_, "version")) return Status::error(c.err);
    // v1 used 32-bit counts and lengths; v2 and v3 differ only in byte-order marking.
    if (version_ != 2 && version_ != 3)
        return Status::error("unsupported GGUF version " + std::to_string(version_) + " (need 2 or 3)");
    uint64_t n_tensors = 0, n_kv = 0;
    if (!c.read(&n_tensors, "tensor count") || !c.read(&n_kv, "metadata count")) return Status::error(c.err);
    // Each KV takes at least 12 bytes (key length + type) and each tensor info at least
    // 8+4+4+8: bound the counts by what is left so a lie cannot make us reserve gigabytes.
    if (n_kv > c.left() / 12) return Status::error("truncated: metadata count " + std::to_string(n_kv) + " exceeds what the file can hold");
    if (n_tensors > c.left() / 24)
        return Status::error("truncated: tensor count " + std::to_string(n_tensors) + " exceeds what the file can hold");

    kvs_.reserve(static_cast<size_t>(n_kv));
    std::unordered_set<std::string_view> seen;
    for (uint64_t i = 0; i < n_kv; ++i) {
        GgufKV kv;
        const size_t kv_off = c.pos;
        if (!c.read_str(&kv.key, "key of metadata #" + std::to_string(i))) return Status::error(c.err);
        const std::string what = "metadata " + quoted(kv.key);
        if (!seen.insert(kv.key).second) return Status::error("duplicate key " + quoted(kv.key) + at(kv_off));
        uint32_t t;
        if (!c.read(&t, what + " type")) return Status::error(c.err);
        if (!valid_type(t)) return Status::error(what + ": invalid value type " + std::to_string(t) + at(c.pos - 4));
        kv.type = static_cast<GgufType>(t);
        if (kv.type == GgufType::STRING) {
            if (!c.read_str(&kv.str, what)) return Status::error(c.err);
        } else if (kv.type == GgufType::ARRAY) {
            uint32_t et;
            if (!c.read(&et, what + " array type") || !c.read(&kv.arr_n, what + " array length"))
                return Status::error(c.err);
            if (!valid_type(et)) return Status::error(what + ": invalid array element type " + std::to_string(et) + at(c.pos - 12));
            kv.arr_type = static_cast<GgufType>(et);
            if (kv.arr_type == GgufType::ARRAY && kMaxArrayNesting == 0)
                return Status::error(what + ": nested arrays are not supported" + at(c.pos - 12));
            if (kv.arr_type == GgufType::STRING) {
                if (kv.arr_n > c.left() / 8)
                    return Status::error("truncated: " + what + ": array of " + std::to_string(kv.arr_n) +
                                         " strings exceeds what the file can hold" + at(c.pos));
                kv.strs.resize(static_cast<size_t>(kv.arr_n));
                for (uint64_t j = 0; j < kv.arr_n; ++j)
                    if (!c.read_str(&kv.strs[j], what + "[" + std::to_string(j) + "]")) return Status::error(c.err);
            } else {
                uint64_t bytes;
                if (__builtin_mul_overflow(kv.arr_n, uint64_t{gguf_type_size(kv.arr_type)}, &bytes))
                    return Status::error(what + ": array length " + std::to_string(kv.arr_n) + " overflows" + at(c.pos));
                if (!c.need(bytes, what + " array data")) return Status::error(c.err);
                kv.data = c.p + c.pos;
                c.pos += static_cast<size_t>(bytes);
            }
        } else {
            if (!c.need(gguf_type_size(kv.type), what + " value")) return Status::error(c.err);
            kv.data = c.p + c.pos;
            if (kv.type == GgufType::BOOL && kv.data[0] > 1)
                return Status::error(what + ": bool value " + std::to_string(kv.data[0]) + " is not 0 or 1" + at(c.pos));
            c.pos += gguf_type_size(kv.type);
        }
        kvs_.push_back(std::move(kv));
    }

    if (const GgufKV* a = find("general.alignment")) {
        if (a->type != GgufType::UINT32) return Status::error(std::string("general.alignment must be uint32, found ") + gguf_type_name(a->type));
        alignment_ = load<uint32_t>(a->data);
        if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0)
            return Status::error("general.alignment " + std::to_string(alignment_) + " is not a power of two");
    }

    tensors_.reserve(static_cast<size_t>(n_tensors));
    std::unordered_set<std::string_view> names;
    for (uint64_t i = 0; i < n_tensors; ++i) {
        GgufTensorInfo ti;
        const size_t ti_off = c.pos;
        if (!c.read_str(&ti.name, "name of tensor #" + std::to_string(i))) return Status::error(c.err);
        const std::string what = "tensor " + quoted(ti.name);
        if (!names.insert(ti.name).second) return Status::error("duplicate " + what + at(ti_off));
        if (!c.read(&ti.n_dims, what + " n_dims")) return Status::error(c.err);
        if (ti.n_dims > kGgufMaxDims)
            return Status::error(what + ": " + std::to_string(ti.n_dims) + " dimensions (at most 4)" + at(c.pos - 4));
        for (uint32_t d = 0; d < ti.n_dims; ++d) {
            if (!c.read(&ti.ne[d], what + " dim " + std::to_string(d))) return Status::error(c.err);
            if (ti.ne[d] > uint64_t(std::numeric_limits<int64_t>::max()))
                return Status::error(what + ": dim " + std::to_string(d) + " is negative" + at(c.pos - 8));
        }
        if (!c.read(&ti.type, what + " type") || !c.read(&ti.offset, what + " offset")) return Status::error(c.err);
        const auto& tr = ggml_type_traits(ti.type);
        if (!tr.name) return Status::error(what + ": unknown ggml type " + std::to_string(ti.type) + at(c.pos - 12));
        ti.n_elements = 1;
        for (int d = 0; d < kGgufMaxDims; ++d)
            if (__builtin_mul_overflow(ti.n_elements, ti.ne[d], &ti.n_elements) || ti.n_elements > uint64_t(INT64_MAX))
                return Status::error(what + ": element count overflows");
        if (ti.ne[0] % tr.block_size != 0)
            return Status::error(what + ": row length " + std::to_string(ti.ne[0]) + " is not a multiple of the " +
                                 tr.name + " block size " + std::to_string(tr.block_size));
        uint64_t row_bytes;
        if (!ggml_row_size(ti.type, ti.ne[0], &row_bytes) ||
            __builtin_mul_overflow(row_bytes, ti.n_elements / (ti.ne[0] ? ti.ne[0] : 1), &ti.n_bytes))
            return Status::error(what + ": byte size overflows");
        if (ti.ne[0] == 0) ti.n_bytes = 0;
        tensors_.push_back(ti);
    }

    // The data section starts at the next multiple of the alignment.
    uint64_t data_off = c.pos;
    if (uint64_t rem = data_off % alignment_; rem != 0) data_off += alignment_ - rem;
    data_offset_ = data_off;
    // A file without tensors may end right after its metadata (vocab-only files do).
    const uint64_t data_size = data_off <= size_ ? size_ - data_off : 0;
    if (!tensors_.empty() && data_off > size_)
        return Status::error("truncated: data section starts at offset " + std::to_string(data_off) +
                             " past the end of the file (" + std::to_string(size_) + " bytes)");
    for (auto& ti : tensors_) {
        const std::string what = "tensor " + quoted(ti.name);
        if (ti.offset % alignment_ != 0)
            return Status::error(what + ": data offset " + std::to_string(ti.offset) + " is not a multiple of the alignment " +
                                 std::to_string(alignment_));
        uint64_t end;
        if (__builtin_add_overflow(ti.offset, ti.n_bytes, &end) || end > data_size)
            return Status::error(what + ": data [" + std::to_string(ti.offset) + ", +" + std::to_string(ti.n_bytes) +
                                 ") runs past the end of the data section (" + std::to_string(data_size) + " bytes at file offset " +
                                 std::to_string(data_off) + ")");
        ti.data = base_ + data_off + ti.offset;
    }
    return Status();
}

const GgufKV* GgufFile::find(std::string_view key) const {
    for (const auto& kv : kvs_)
        if (kv.key == key) return &kv;
    return nullptr;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
    for (const auto& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

namespace {
Status missing(std::string_view key) { return Status::error("missing key '" + std::string(key) + "'"); }
Status wrong(std::string_view key, const char* want, GgufType got) {
    return Status::error("key '" + std::string(key) + "': expected " + want + ", found " + gguf_type_name(got));
}
}  // namespace

Status GgufFile::get_i64(std::string_view key, int64_t* out) const {
    const GgufKV* kv = find(key);
    if (!kv) return missing(key);
    if (!kv->is_integer()) return wrong(key, "an integer", kv->type);
    if (kv->type == GgufType::UINT64 && load<uint64_t>(kv->data) > uint64_t(INT64_MAX))
        return Status::error("key '" + std::string(key) + "': value out of range");
    *out = kv->int_at(0);
    return Status();
}

Status GgufFile::get_u64(std::string_view key, uint64_t* out) const {
    int64_t v;
    if (Status s = get_i64(key, &v); !s.ok()) return s;
    if (v < 0) return Status::error("key '" + std::string(key) + "': negative value " + std::to_string(v));
    *out = static_cast<uint64_t>(v);
    return Status();
}

Status GgufFile::get_u32(std::string_view key, uint32_t* out) const {
    uint64_t v;
    if (Status s = get_u64(key, &v); !s.ok()) return s;
    if (v > UINT32_MAX) return Status::error("key '" + std::string(key) + "': value " + std::to_string(v) + " out of range");
    *out = static_cast<uint32_t>(v);
    return Status();
}

Status GgufFile::get_f32(std::string_view key, float* out) const {
    const GgufKV* kv = find(key);
    if (!kv) return missing(key);
    if (!kv->is_float()) return wrong(key, "a float", kv->type);
    *out = static_cast<float>(kv->float_at(0));
    return Status();
}

Status GgufFile::get_bool(std::string_view key, bool* out) const {
    const GgufKV* kv = find(key);
    if (!kv) return missing(key);
    if (kv->type != GgufType::BOOL) return wrong(key, "a bool", kv->type);
    *out = kv->data[0] != 0;
    return Status();
}

Status GgufFile::get_string(std::string_view key, std::string_view* out) const {
    const GgufKV* kv = find(key);
    if (!kv) return missing(key);
    if (kv->type != GgufType::STRING) return wrong(key, "a string", kv->type);
    *out = kv->str;
    return Status();
}

Status GgufFile::get_array(std::string_view key, GgufType elem, const GgufKV** out) const {
    const GgufKV* kv = find(key);
    if (!kv) return missing(key);
    if (kv->type != GgufType::ARRAY) return wrong(key, "an array", kv->type);
    if (kv->arr_type != elem)
        return Status::error("key '" + std::string(key) + "': expected an array of " + gguf_type_name(elem) + ", found an array of " +
                             gguf_type_name(kv->arr_type));
    *out = kv;
    return Status();
}

}  // namespace reprise::engine
