#include "gguf_corpus_cases.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "engine/ggml_types.hpp"

using namespace reprise::engine;

namespace engine_test {

std::vector<float> test_floats(size_t n, uint32_t seed) {
    std::vector<float> v(n);
    uint32_t s = seed * 2654435761u + 1;
    for (auto& x : v) {
        s = s * 1664525u + 1013904223u;
        x = static_cast<float>(s >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f;
    }
    return v;
}

namespace {

// Encodes n floats (a whole tensor) as `type`.
std::vector<uint8_t> encode(uint32_t type, const std::vector<float>& x) {
    uint64_t row_bytes = 0;
    ggml_row_size(type, x.size(), &row_bytes);
    std::vector<uint8_t> out(row_bytes);
    const auto k = static_cast<int64_t>(x.size());
    switch (static_cast<GgmlType>(type)) {
        case GgmlType::F32: std::memcpy(out.data(), x.data(), out.size()); break;
        case GgmlType::F16: quantize_row_f16(x.data(), reinterpret_cast<uint16_t*>(out.data()), k); break;
        case GgmlType::BF16: quantize_row_bf16(x.data(), reinterpret_cast<uint16_t*>(out.data()), k); break;
        case GgmlType::Q8_0: quantize_row_q8_0_ref(x.data(), reinterpret_cast<BlockQ8_0*>(out.data()), k); break;
        case GgmlType::Q4_0: quantize_row_q4_0_ref(x.data(), reinterpret_cast<BlockQ4_0*>(out.data()), k); break;
        default:  // Q4_K and others: deterministic raw bytes are enough for reader tests
            for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(i * 31 + 7);
            if (type == static_cast<uint32_t>(GgmlType::Q4_K))  // keep d/dmin finite: small halves
                for (size_t b = 0; b + 4 <= out.size(); b += sizeof(BlockQ4_K)) {
                    const uint16_t h = fp32_to_fp16(0.01f);
                    std::memcpy(&out[b], &h, 2);
                    std::memcpy(&out[b + 2], &h, 2);
                }
            break;
    }
    return out;
}

void add(GgufWriter& w, const std::string& name, uint32_t type, std::vector<uint64_t> ne, uint32_t seed) {
    uint64_t n = 1;
    for (auto d : ne) n *= d;
    const auto bytes = encode(type, test_floats(n, seed));
    (void)w.add_tensor(name, type, ne, bytes.data(), bytes.size());
}

std::vector<std::string> spm_vocab() {
    std::vector<std::string> v = {"<unk>", "<s>", "</s>"};
    char buf[8];
    for (int b = 0; b < 256; ++b) {
        std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
        v.push_back(buf);
    }
    for (const char* t : {"\xe2\x96\x81", "e", "l", "o", "H", "w", "r", "d", "\xe2\x96\x81H", "ll", "llo", "\xe2\x96\x81Hello",
                          "\xe2\x96\x81w", "or", "\xe2\x96\x81wor", "\xe2\x96\x81world", "\xe2\x96\x81He", "ld"})
        v.push_back(t);
    return v;
}

void add_spm_tokenizer(GgufWriter& w) {
    const auto vocab = spm_vocab();
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_array_strings("tokenizer.ggml.tokens", vocab);
    std::vector<float> scores(vocab.size());
    std::vector<int32_t> types(vocab.size(), 1);
    for (size_t i = 0; i < vocab.size(); ++i) scores[i] = -static_cast<float>(i);
    types[0] = 2, types[1] = 3, types[2] = 3;
    for (size_t i = 3; i < 259; ++i) types[i] = 6;
    (void)w.set_array("tokenizer.ggml.scores", GgufType::FLOAT32, scores.data(), scores.size());
    (void)w.set_array("tokenizer.ggml.token_type", GgufType::INT32, types.data(), types.size());
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
}

// Replaces the 4 bytes of a tensor info field: which = 0 n_dims, 1 type; or the 8-byte
// offset (which = 2). Finds the tensor by its name in the bytes.
void patch_tensor(std::vector<uint8_t>& b, const std::string& name, int which, uint64_t value) {
    std::vector<uint8_t> key(8);
    const uint64_t len = name.size();
    std::memcpy(key.data(), &len, 8);
    key.insert(key.end(), name.begin(), name.end());
    auto it = std::search(b.begin(), b.end(), key.begin(), key.end());
    if (it == b.end()) return;
    size_t p = static_cast<size_t>(it - b.begin()) + key.size();
    uint32_t n_dims;
    std::memcpy(&n_dims, &b[p], 4);
    if (which == 0) {
        const uint32_t v = static_cast<uint32_t>(value);
        std::memcpy(&b[p], &v, 4);
        return;
    }
    p += 4 + 8 * n_dims;
    if (which == 1) {
        const uint32_t v = static_cast<uint32_t>(value);
        std::memcpy(&b[p], &v, 4);
    } else {
        std::memcpy(&b[p + 4], &value, 8);
    }
}

// Replaces the first occurrence of `from` with `to` (same length).
void patch_bytes(std::vector<uint8_t>& b, const std::string& from, const std::string& to) {
    auto it = std::search(b.begin(), b.end(), from.begin(), from.end());
    if (it != b.end()) std::copy(to.begin(), to.end(), it);
}

template <typename T>
void put_at(std::vector<uint8_t>& b, size_t off, T v) { std::memcpy(&b[off], &v, sizeof(T)); }

GgufWriter all_types() {
    GgufWriter w;
    w.set_string("general.architecture", "test");
    w.set_u8("t.u8", 200);
    w.set_i8("t.i8", -100);
    w.set_u16("t.u16", 60000);
    w.set_i16("t.i16", -30000);
    w.set_u32("t.u32", 4000000000u);
    w.set_i32("t.i32", -2000000000);
    w.set_u64("t.u64", 1ull << 60);
    w.set_i64("t.i64", -(1ll << 60));
    w.set_f32("t.f32", 1.5f);
    w.set_f64("t.f64", -2.25);
    w.set_bool("t.bool", true);
    w.set_string("t.str", "h\xc3\xa9llo");
    const int32_t ints[] = {1, -2, 3};
    (void)w.set_array("t.arr_i32", GgufType::INT32, ints, 3);
    const double dbl[] = {0.5, 1e300};
    (void)w.set_array("t.arr_f64", GgufType::FLOAT64, dbl, 2);
    const uint8_t bools[] = {1, 0};
    (void)w.set_array("t.arr_bool", GgufType::BOOL, bools, 2);
    w.set_array_strings("t.arr_str", {"a", "", "\xe2\x96\x81z"});
    add(w, "w.f32", 0, {4, 3}, 1);
    add(w, "w.f16", 1, {8, 2}, 2);
    add(w, "w.bf16", 30, {8}, 3);
    add(w, "w.q8_0", 8, {64, 2}, 4);
    add(w, "w.q4_0", 2, {32, 3}, 5);
    add(w, "w.q4_k", 12, {256, 1}, 6);
    add(w, "w.q2_k", 10, {256}, 7);  // known to ggml, not supported here: parses fine
    add(w, "w.3d", 0, {2, 3, 4}, 8);
    add(w, "w.4d", 0, {1, 2, 1, 2}, 9);
    return w;
}

}  // namespace

GgufWriter tiny_llama(const TinyLlamaOptions& o) {
    const uint64_t E = 32, KV = 16, F = 64;
    const auto vocab = spm_vocab();
    const uint64_t V = vocab.size();
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_string("general.name", "tiny");
    w.set_u32("llama.context_length", 128);
    w.set_u32("llama.embedding_length", static_cast<uint32_t>(E));
    w.set_u32("llama.block_count", 2);
    w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(F));
    w.set_u32("llama.attention.head_count", 4);
    w.set_u32("llama.attention.head_count_kv", 2);
    w.set_f32("llama.rope.freq_base", 10000.0f);
    w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.set_u32("llama.rope.dimension_count", 8);
    add_spm_tokenizer(w);
    uint32_t seed = 100;
    auto t = [&](const std::string& name, uint32_t type, uint64_t ne0, uint64_t ne1) {
        ++seed;
        if (name == o.drop) return;
        if (name == o.misshape) ne1 += 1;
        if (ne1) add(w, name, type, {ne0, ne1}, seed);
        else add(w, name, 0, {ne0}, seed);
    };
    t("token_embd.weight", o.type, E, V);
    for (int i = 0; i < 2; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        t(p + "attn_norm.weight", 0, E, 0);
        t(p + "attn_q.weight", o.type, E, E);
        t(p + "attn_k.weight", o.type, E, KV);
        t(p + "attn_v.weight", o.type, E, KV);
        t(p + "attn_output.weight", o.type, E, E);
        t(p + "ffn_norm.weight", 0, E, 0);
        t(p + "ffn_gate.weight", o.type, E, F);
        t(p + "ffn_up.weight", o.type, E, F);
        t(p + "ffn_down.weight", o.type, F, E);
    }
    t("output_norm.weight", 0, E, 0);
    if (!o.tied) t("output.weight", o.type, E, V);
    return w;
}

std::vector<CorpusCase> gguf_corpus_cases() {
    std::vector<CorpusCase> c;
    auto add_case = [&](std::string name, std::vector<uint8_t> b, std::string expect) {
        c.push_back({std::move(name), std::move(b), std::move(expect)});
    };

    GgufWriter empty;
    add_case("valid_empty.gguf", empty.to_bytes(), "");
    GgufWriter v2;
    v2.set_version(2);
    v2.set_string("general.name", "v2");
    add_case("valid_v2.gguf", v2.to_bytes(), "");
    const auto all = all_types().to_bytes();
    add_case("valid_all_types.gguf", all, "");
    GgufWriter al = all_types();
    (void)al.set_alignment(64);
    add_case("valid_align64.gguf", al.to_bytes(), "");
    add_case("valid_tiny_llama_q8_0.gguf", tiny_llama({8, false, "", ""}).to_bytes(), "");
    add_case("valid_tiny_llama_q4_0_tied.gguf", tiny_llama({2, true, "", ""}).to_bytes(), "");

    add_case("bad_empty_file.gguf", {}, "truncated: magic");
    add_case("bad_magic.gguf", {'G', 'G', 'M', 'L', 3, 0, 0, 0}, "bad magic");
    for (uint32_t ver : {1u, 4u}) {
        GgufWriter w;
        w.set_version(ver);
        add_case("bad_version" + std::to_string(ver) + ".gguf", w.to_bytes(), "unsupported GGUF version " + std::to_string(ver));
    }
    // Truncations at every section: header, inside a key, inside an array, inside the
    // tensor infos, inside the data.
    // (the data section starts at a multiple of 32 after the tensor infos; find it)
    size_t data_start = 0;
    if (auto f = GgufFile::from_memory(all.data(), all.size()); f.ok()) data_start = static_cast<size_t>((*f)->data_offset());
    for (size_t cut : {size_t{6}, size_t{20}, size_t{40}, size_t{200}, size_t{500}, data_start - 40, data_start - 1})
        add_case("bad_truncated_" + std::to_string(cut) + ".gguf", std::vector<uint8_t>(all.begin(), all.begin() + cut), "truncated");
    add_case("bad_truncated_data.gguf", std::vector<uint8_t>(all.begin(), all.begin() + data_start + 8), "runs past the end");

    {
        auto b = empty.to_bytes();
        put_at<uint64_t>(b, 16, 1ull << 40);  // kv count
        add_case("bad_kv_count.gguf", b, "metadata count");
        auto t = empty.to_bytes();
        put_at<uint64_t>(t, 8, 1ull << 62);  // tensor count
        add_case("bad_tensor_count.gguf", t, "tensor count");
    }
    {
        GgufWriter w;
        w.set_u32("k", 1);
        auto b = w.to_bytes();
        put_at<uint32_t>(b, 24 + 8 + 1, 13);  // value type after the key "k"
        add_case("bad_value_type.gguf", b, "invalid value type 13");
    }
    {
        GgufWriter w;
        const int32_t x[] = {1, 2};
        (void)w.set_array("k", GgufType::INT32, x, 2);
        auto b = w.to_bytes();
        put_at<uint64_t>(b, 24 + 9 + 8, 1ull << 62);  // element count: 2^62 * 4 bytes overflows
        add_case("bad_array_len.gguf", b, "overflows");
        auto n = w.to_bytes();
        put_at<uint32_t>(n, 24 + 9 + 4, 9);  // element type: array
        add_case("bad_nested_array.gguf", n, "nested arrays");
        auto s = w.to_bytes();
        put_at<uint32_t>(s, 24 + 9 + 4, 8);  // element type: string, lengths from the ints
        add_case("bad_string_array.gguf", s, "truncated");
    }
    {
        GgufWriter w;
        w.set_u32("a", 1);
        w.set_u32("b", 2);
        auto b = w.to_bytes();
        patch_bytes(b, std::string("\x01\0\0\0\0\0\0\0b", 9), std::string("\x01\0\0\0\0\0\0\0a", 9));
        add_case("bad_duplicate_key.gguf", b, "duplicate key 'a'");
        w.set_bool("c", true);
        auto bo = w.to_bytes();
        bo.back() = 2;
        add_case("bad_bool.gguf", bo, "bool value 2");
    }
    {
        GgufWriter w;
        w.set_u32("general.alignment", 48);
        add_case("bad_alignment.gguf", w.to_bytes(), "not a power of two");
        GgufWriter w2;
        w2.set_string("general.alignment", "x");
        add_case("bad_alignment_type.gguf", w2.to_bytes(), "general.alignment must be uint32");
    }
    {
        auto b = all;
        patch_tensor(b, "w.f32", 1, 99);
        add_case("bad_tensor_type.gguf", b, "tensor 'w.f32': unknown ggml type 99");
        b = all;
        patch_tensor(b, "w.f16", 0, 5);
        add_case("bad_tensor_ndims.gguf", b, "5 dimensions");
        b = all;
        patch_tensor(b, "w.q8_0", 2, 33);
        add_case("bad_tensor_misaligned.gguf", b, "not a multiple of the alignment");
        b = all;
        patch_tensor(b, "w.4d", 2, 1ull << 40);
        add_case("bad_tensor_past_end.gguf", b, "runs past the end");
        b = all;
        patch_tensor(b, "w.f32", 2, ~0ull - 31);  // offset + size overflows
        add_case("bad_tensor_offset_overflow.gguf", b, "runs past the end");
        b = all;
        patch_tensor(b, "w.q8_0", 1, 2);  // Q4_0 with the same shape: still fits, valid
        add_case("valid_retyped.gguf", b, "");
        b = all;
        patch_tensor(b, "w.f32", 1, 8);  // Q8_0 with a row of 4
        add_case("bad_block_size.gguf", b, "not a multiple of the Q8_0 block size");
        b = all;
        patch_bytes(b, std::string("w.bf16"), std::string("w.f16\0", 6));
        add_case("bad_tensor_name.gguf", b, "");  // a NUL in a name is just bytes
    }
    {
        // One tensor "x" of [2^31, 2^31] F32: the element count fits, the bytes do not.
        std::vector<uint8_t> r;
        auto app = [&](auto v) { const auto* p = reinterpret_cast<const uint8_t*>(&v); r.insert(r.end(), p, p + sizeof(v)); };
        r = {'G', 'G', 'U', 'F'};
        app(uint32_t{3}), app(uint64_t{1}), app(uint64_t{0});
        app(uint64_t{1}), r.push_back('x');
        app(uint32_t{2}), app(uint64_t{1} << 31), app(uint64_t{1} << 31), app(uint32_t{0}), app(uint64_t{0});
        r.resize(96, 0);
        add_case("bad_tensor_bytes_overflow.gguf", r, "byte size overflows");
        // [2^62, 2^2, 2^1]: the element count itself overflows int64.
        std::vector<uint8_t> e(r.begin(), r.begin() + 33);  // up to n_dims
        r.swap(e);
        app(uint32_t{3}), app(uint64_t{1} << 62), app(uint64_t{4}), app(uint64_t{2}), app(uint32_t{0}), app(uint64_t{0});
        r.resize(96, 0);
        add_case("bad_tensor_count_overflow.gguf", r, "element count overflows");
    }
    add_case("bad_llama_missing_tensor.gguf", tiny_llama({8, false, "blk.1.ffn_up.weight", ""}).to_bytes(),
             "missing tensor 'blk.1.ffn_up.weight'");
    add_case("bad_llama_shape.gguf", tiny_llama({8, false, "", "blk.0.attn_k.weight"}).to_bytes(),
             "tensor 'blk.0.attn_k.weight' has shape [32, 17], expected [32, 16]");
    {
        GgufWriter w = tiny_llama({2, false, "", ""});
        w.set_u32("llama.attention.head_count_kv", 3);
        add_case("bad_llama_gqa.gguf", w.to_bytes(), "not a multiple of head_count_kv 3");
        GgufWriter x = tiny_llama({2, true, "", ""});
        x.set_string("llama.block_count", "two");
        add_case("bad_llama_key_type.gguf", x.to_bytes(), "key 'llama.block_count': expected an integer, found string");
        GgufWriter q = tiny_llama({20, true, "", ""});  // IQ4_NL: known, not supported
        add_case("bad_llama_unsupported_type.gguf", q.to_bytes(), "does not support");
    }
    {
        GgufWriter w;
        w.set_string("tokenizer.ggml.model", "gpt2");
        w.set_array_strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
        w.set_array_strings("tokenizer.ggml.merges", {"a b"});
        w.set_string("tokenizer.ggml.pre", "gpt-2");
        add_case("valid_bpe_vocab.gguf", w.to_bytes(), "");
        w.set_string("tokenizer.ggml.pre", "falcon");
        add_case("bad_bpe_pre.gguf", w.to_bytes(), "unsupported tokenizer.ggml.pre 'falcon'");
        w.set_string("tokenizer.ggml.pre", "qwen2");
        w.set_array_strings("tokenizer.ggml.merges", {"ab"});
        add_case("bad_bpe_merge.gguf", w.to_bytes(), "has no space separator");
        GgufWriter s;
        s.set_string("tokenizer.ggml.model", "llama");
        s.set_array_strings("tokenizer.ggml.tokens", {"a", "b"});
        const float sc[] = {0.0f};
        (void)s.set_array("tokenizer.ggml.scores", GgufType::FLOAT32, sc, 1);
        add_case("bad_spm_scores.gguf", s.to_bytes(), "tokenizer.ggml.scores has 1 entries for 2 tokens");
        s.set_string("tokenizer.ggml.model", "t5");
        add_case("bad_tokenizer_model.gguf", s.to_bytes(), "unsupported tokenizer.ggml.model 't5'");
    }
    return c;
}

}  // namespace engine_test
