// The GGUF reader and writer: round trips of every metadata type and tensor type,
// alignment, the mmap path, typed getters, and the Llama metadata/tensor checks.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "engine/ggml_types.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_writer.hpp"
#include "engine/llama_meta.hpp"
#include "engine/tokenizer.hpp"
#include "gguf_corpus_cases.hpp"

using namespace reprise::engine;

namespace {

// The GgufFile borrows b: callers keep it alive (an rvalue would dangle).
std::unique_ptr<GgufFile> parse(const std::vector<uint8_t>& b) {
    auto f = GgufFile::from_memory(b.data(), b.size());
    REQUIRE_MESSAGE(f.ok(), f.error());
    return std::move(f).value();
}

std::unique_ptr<GgufFile> parse(std::vector<uint8_t>&&) = delete;

}  // namespace

TEST_CASE("gguf: metadata of every type round-trips") {
    GgufWriter w;
    w.set_u8("u8", 250);
    w.set_i8("i8", -7);
    w.set_u16("u16", 65535);
    w.set_i16("i16", -32768);
    w.set_u32("u32", 4294967295u);
    w.set_i32("i32", -5);
    w.set_u64("u64", 18446744073709551615ull);
    w.set_i64("i64", -9000000000ll);
    w.set_f32("f32", 0.1f);
    w.set_f64("f64", 0.1);
    w.set_bool("yes", true);
    w.set_bool("no", false);
    w.set_string("s", std::string("with\0nul", 8));
    w.set_string("empty", "");
    const int16_t a16[] = {-1, 2, -3};
    REQUIRE(w.set_array("a16", GgufType::INT16, a16, 3).ok());
    const float af[] = {1.5f, -0.25f};
    REQUIRE(w.set_array("af", GgufType::FLOAT32, af, 2).ok());
    REQUIRE(w.set_array("a0", GgufType::UINT64, nullptr, 0).ok());
    w.set_array_strings("as", {"x", "", "\xe2\x96\x81y"});
    CHECK_FALSE(w.set_array("bad", GgufType::STRING, nullptr, 0).ok());
    w.set_u32("u32", 7);  // replaces, keeps the position

    const auto bytes = w.to_bytes();
    auto f = parse(bytes);
    CHECK(f->version() == 3);
    CHECK(f->tensors().empty());
    REQUIRE(f->kvs().size() == 18);
    CHECK(f->kvs()[4].key == "u32");

    uint64_t u64 = 0;
    int64_t i64 = 0;
    uint32_t u32 = 0;
    float f32 = 0;
    bool b = false;
    std::string_view s;
    CHECK(f->get_u32("u8", &u32).ok());
    CHECK(u32 == 250);
    CHECK(f->get_i64("i8", &i64).ok());
    CHECK(i64 == -7);
    CHECK(f->get_u32("u16", &u32).ok());
    CHECK(u32 == 65535);
    CHECK(f->get_i64("i16", &i64).ok());
    CHECK(i64 == -32768);
    CHECK(f->get_u32("u32", &u32).ok());
    CHECK(u32 == 7);
    CHECK(f->get_i64("i64", &i64).ok());
    CHECK(i64 == -9000000000ll);
    CHECK(f->get_f32("f32", &f32).ok());
    CHECK(f32 == 0.1f);
    CHECK(f->find("f64")->float_at(0) == 0.1);
    CHECK(f->get_bool("yes", &b).ok());
    CHECK(b);
    CHECK(f->get_bool("no", &b).ok());
    CHECK_FALSE(b);
    CHECK(f->get_string("s", &s).ok());
    CHECK(s == std::string_view("with\0nul", 8));
    CHECK(f->get_string("empty", &s).ok());
    CHECK(s.empty());
    const GgufKV* arr = nullptr;
    REQUIRE(f->get_array("a16", GgufType::INT16, &arr).ok());
    CHECK(arr->arr_n == 3);
    CHECK(arr->int_at(2) == -3);
    REQUIRE(f->get_array("af", GgufType::FLOAT32, &arr).ok());
    CHECK(arr->float_at(1) == -0.25);
    REQUIRE(f->get_array("a0", GgufType::UINT64, &arr).ok());
    CHECK(arr->arr_n == 0);
    REQUIRE(f->get_array("as", GgufType::STRING, &arr).ok());
    REQUIRE(arr->strs.size() == 3);
    CHECK(arr->strs[2] == "\xe2\x96\x81y");

    // Errors name the key and what was found.
    Status e = f->get_u32("missing", &u32);
    CHECK(e.message() == "missing key 'missing'");
    e = f->get_u32("s", &u32);
    CHECK(e.message() == "key 's': expected an integer, found string");
    e = f->get_u32("i8", &u32);
    CHECK(e.message().find("negative value -7") != std::string::npos);
    e = f->get_u32("u64", &u32);
    CHECK_FALSE(e.ok());
    e = f->get_u64("u64", &u64);  // 2^64-1 does not fit the int64 path
    CHECK(e.message().find("out of range") != std::string::npos);
    e = f->get_array("af", GgufType::INT32, &arr);
    CHECK(e.message() == "key 'af': expected an array of int32, found an array of float32");
    e = f->get_f32("u8", &f32);
    CHECK(e.message() == "key 'u8': expected a float, found uint8");

    // Writing the parsed file back gives the same bytes.
    GgufWriter w2;
    for (const auto& kv : f->kvs()) {
        if (kv.type == GgufType::STRING) w2.set_string(kv.key, kv.str);
        else if (kv.type == GgufType::ARRAY && kv.arr_type == GgufType::STRING)
            w2.set_array_strings(kv.key, std::vector<std::string>(kv.strs.begin(), kv.strs.end()));
        else if (kv.type == GgufType::ARRAY) REQUIRE(w2.set_array(kv.key, kv.arr_type, kv.data, kv.arr_n).ok());
        else {
            // scalars: copy the raw bytes through the typed setters
            switch (kv.type) {
                case GgufType::UINT8: w2.set_u8(kv.key, kv.data[0]); break;
                case GgufType::INT8: w2.set_i8(kv.key, static_cast<int8_t>(kv.data[0])); break;
                case GgufType::BOOL: w2.set_bool(kv.key, kv.data[0] != 0); break;
                case GgufType::FLOAT32: w2.set_f32(kv.key, static_cast<float>(kv.float_at(0))); break;
                case GgufType::FLOAT64: w2.set_f64(kv.key, kv.float_at(0)); break;
                case GgufType::UINT64: { uint64_t v; std::memcpy(&v, kv.data, 8); w2.set_u64(kv.key, v); break; }
                case GgufType::INT64: w2.set_i64(kv.key, kv.int_at(0)); break;
                case GgufType::UINT32: w2.set_u32(kv.key, static_cast<uint32_t>(kv.int_at(0))); break;
                case GgufType::INT32: w2.set_i32(kv.key, static_cast<int32_t>(kv.int_at(0))); break;
                case GgufType::UINT16: w2.set_u16(kv.key, static_cast<uint16_t>(kv.int_at(0))); break;
                case GgufType::INT16: w2.set_i16(kv.key, static_cast<int16_t>(kv.int_at(0))); break;
                default: FAIL("unexpected type");
            }
        }
    }
    CHECK(w2.to_bytes() == bytes);
}

TEST_CASE("gguf: tensors of every type, aligned, via mmap") {
    for (uint32_t alignment : {32u, 64u, 1u}) {
        CAPTURE(alignment);
        GgufWriter w;
        REQUIRE(w.set_alignment(alignment).ok());
        struct T { const char* name; uint32_t type; std::vector<uint64_t> ne; };
        const T ts[] = {{"f32", 0, {3, 2}}, {"f16", 1, {5}}, {"bf16", 30, {2, 2, 2}}, {"q8", 8, {32, 3}},
                        {"q4", 2, {64, 1, 1, 2}}, {"q4k", 12, {256}}};
        std::vector<std::vector<uint8_t>> datas;
        for (const auto& t : ts) {
            uint64_t rows = 1, rb = 0;
            for (size_t i = 1; i < t.ne.size(); ++i) rows *= t.ne[i];
            REQUIRE(ggml_row_size(t.type, t.ne[0], &rb));
            std::vector<uint8_t> d(rb * rows);
            for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<uint8_t>(i * 7 + t.type);
            REQUIRE(w.add_tensor(t.name, t.type, t.ne, d.data(), d.size()).ok());
            datas.push_back(d);
        }
        CHECK_FALSE(w.add_tensor("f32", 0, {1}, datas[0].data(), 4).ok());           // duplicate
        CHECK_FALSE(w.add_tensor("odd", 8, {33}, datas[0].data(), 34).ok());         // not a block
        CHECK_FALSE(w.add_tensor("short", 0, {4}, datas[0].data(), 12).ok());        // wrong size
        CHECK_FALSE(w.add_tensor("5d", 0, {1, 1, 1, 1, 1}, datas[0].data(), 4).ok()); // too many dims

        const auto path = std::filesystem::temp_directory_path() / ("reprise_gguf_test_" + std::to_string(getpid()) + ".gguf");
        REQUIRE(w.write_file(path.string()).ok());
        auto opened = GgufFile::open(path.string());
        std::filesystem::remove(path);  // the mapping stays valid after unlink
        REQUIRE_MESSAGE(opened.ok(), opened.error());
        const GgufFile& f = **opened;
        CHECK(f.alignment() == alignment);
        CHECK(f.data_offset() % alignment == 0);
        REQUIRE(f.tensors().size() == 6);
        for (size_t i = 0; i < 6; ++i) {
            const GgufTensorInfo* t = f.find_tensor(ts[i].name);
            REQUIRE(t);
            CHECK(t->type == ts[i].type);
            CHECK(t->n_dims == ts[i].ne.size());
            for (size_t d = 0; d < ts[i].ne.size(); ++d) CHECK(t->ne[d] == ts[i].ne[d]);
            CHECK(t->offset % alignment == 0);
            REQUIRE(t->n_bytes == datas[i].size());
            CHECK(std::memcmp(t->data, datas[i].data(), datas[i].size()) == 0);
        }
    }
    CHECK_FALSE(GgufWriter().set_alignment(24).ok());
    CHECK(GgufFile::open("/nonexistent/x.gguf").error().find("cannot open") != std::string::npos);
    CHECK(GgufFile::open("/").error().find("not a regular file") != std::string::npos);
}

TEST_CASE("gguf: version 2 is accepted") {
    GgufWriter w;
    w.set_version(2);
    w.set_u32("k", 1);
    const auto bytes = w.to_bytes();  // from_memory borrows: keep the buffer alive
    auto f = parse(bytes);
    CHECK(f->version() == 2);
}

TEST_CASE("llama: hyper-parameters and tensors of a tiny model") {
    for (uint32_t type : {0u, 1u, 30u, 8u, 2u}) {
        CAPTURE(type);
        const auto bytes = engine_test::tiny_llama({type, false, "", ""}).to_bytes();
        auto f = parse(bytes);
        LlamaHParams hp;
        REQUIRE_MESSAGE(llama_read_hparams(*f, &hp).ok(), llama_read_hparams(*f, &hp).message());
        CHECK(hp.n_embd == 32);
        CHECK(hp.n_layer == 2);
        CHECK(hp.n_head == 4);
        CHECK(hp.n_head_kv == 2);
        CHECK(hp.head_dim() == 8);
        CHECK(hp.n_embd_kv() == 16);
        CHECK(hp.n_ff == 64);
        CHECK(hp.n_rot == 8);
        CHECK(hp.n_ctx_train == 128);
        CHECK(hp.n_vocab == 277);
        CHECK(hp.rms_eps == 1e-5f);
        CHECK(hp.rope_freq_base == 10000.0f);
        LlamaTensors t;
        const Status s = llama_find_tensors(*f, hp, &t);
        REQUIRE_MESSAGE(s.ok(), s.message());
        CHECK_FALSE(t.tied_output);
        REQUIRE(t.layers.size() == 2);
        CHECK(t.layers[1].ffn_down->ne[0] == 64);
        CHECK(t.layers[1].wk->type == type);
        // Dequantized rows stay close to what was written (F32 source: test_floats).
        std::vector<float> row(32);
        REQUIRE(dequantize_row(t.tok_embd->type, t.tok_embd->data, row.data(), 32));
        const auto src = engine_test::test_floats(32 * 277, 101);
        for (int i = 0; i < 32; ++i) CHECK(row[i] == doctest::Approx(src[i]).epsilon(0.2).scale(1.0));
    }
    const auto tied_bytes = engine_test::tiny_llama({8, true, "", ""}).to_bytes();
    auto tied = parse(tied_bytes);
    LlamaHParams hp;
    REQUIRE(llama_read_hparams(*tied, &hp).ok());
    LlamaTensors t;
    REQUIRE(llama_find_tensors(*tied, hp, &t).ok());
    CHECK(t.tied_output);
    CHECK(t.output == t.tok_embd);
    // The tiny model's vocabulary tokenizes.
    auto tok = Tokenizer::from_gguf(*tied);
    REQUIRE_MESSAGE(tok.ok(), tok.error());
    CHECK((*tok)->encode("Hello world", false) == std::vector<TokenId>{270, 274});
    CHECK((*tok)->decode({270, 274}) == "Hello world");
}

TEST_CASE("llama: clear errors for bad metadata") {
    auto err = [](engine_test::TinyLlamaOptions o, auto edit) {
        GgufWriter w = engine_test::tiny_llama(o);
        edit(w);
        const auto b = w.to_bytes();
        auto f = GgufFile::from_memory(b.data(), b.size());
        REQUIRE(f.ok());
        LlamaHParams hp;
        Status s = llama_read_hparams(**f, &hp);
        if (s.ok()) {
            LlamaTensors t;
            s = llama_find_tensors(**f, hp, &t);
        }
        return s.message();
    };
    auto none = [](GgufWriter&) {};
    CHECK(err({0, false, "output_norm.weight", ""}, none) == "llama: missing tensor 'output_norm.weight'");
    CHECK(err({0, false, "", "output.weight"}, none) == "llama: tensor 'output.weight' has shape [32, 278], expected [32, 277]");
    CHECK(err({0, false, "", ""}, [](GgufWriter& w) { w.set_string("general.architecture", "gpt2"); }) ==
          "model: general.architecture 'gpt2' is not supported (supported: llama, qwen2, qwen3)");
    CHECK(err({0, false, "", ""}, [](GgufWriter& w) { w.set_u32("llama.attention.head_count", 5); }) ==
          "llama: embedding_length 32 is not a multiple of head_count 5");
    CHECK(err({0, false, "", ""}, [](GgufWriter& w) { w.set_u32("llama.rope.dimension_count", 10); })
              .find("rope.dimension_count 10") != std::string::npos);
    CHECK(err({0, false, "", ""}, [](GgufWriter& w) { w.set_u32("llama.block_count", 3); }) ==
          "llama: missing tensor 'blk.2.attn_norm.weight'");
    CHECK(err({0, false, "", ""}, [](GgufWriter& w) { w.set_u32("llama.embedding_length", 0); }).find("zero-sized") !=
          std::string::npos);
}
