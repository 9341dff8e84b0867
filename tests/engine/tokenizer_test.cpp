// The tokenizers against llama.cpp's reference vectors (produced by the Hugging Face
// tokenizers): NAME.gguf.inp holds strings, each followed by "\n__ggml_vocab_test__\n";
// NAME.gguf.out holds one line of space-separated ids per string. As in llama.cpp's
// test-tokenizer-0, strings are tokenized without special tokens (no BOS).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "engine/gguf.hpp"
#include "engine/tokenizer.hpp"
#include "fixtures.hpp"

using namespace reprise::engine;
using engine_test::read_file;
using engine_test::vocab_path;

namespace {

std::vector<std::string> split_inputs(const std::string& text) {
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> out;
    size_t pos = 0;
    for (size_t f; (f = text.find(sep, pos)) != std::string::npos; pos = f + sep.size()) out.push_back(text.substr(pos, f - pos));
    REQUIRE_MESSAGE(pos == text.size(), "input file does not end with the separator");
    return out;
}

std::vector<std::vector<TokenId>> read_outputs(const std::string& text) {
    std::vector<std::vector<TokenId>> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        std::istringstream ls(line);
        std::vector<TokenId> ids;
        for (long v; ls >> v;) ids.push_back(static_cast<TokenId>(v));
        out.push_back(ids);
    }
    return out;
}

std::string ids_str(const std::vector<TokenId>& ids) {
    std::ostringstream s;
    for (auto id : ids) s << ' ' << id;
    return s.str();
}

void check_vocab(const std::string& name, VocabKind kind) {
    auto f = GgufFile::open(vocab_path(name));
    REQUIRE_MESSAGE(f.ok(), f.error());
    auto tok = Tokenizer::from_gguf(**f);
    REQUIRE_MESSAGE(tok.ok(), tok.error());
    CHECK((*tok)->kind() == kind);
    f = Status::error("closed");  // the tokenizer must not depend on the file staying open

    const auto inputs = split_inputs(read_file(vocab_path(name + ".inp")));
    const auto expected = read_outputs(read_file(vocab_path(name + ".out")));
    REQUIRE(inputs.size() == expected.size());
    REQUIRE(!inputs.empty());
    size_t enc_pass = 0, dec_pass = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const auto ids = (*tok)->encode(inputs[i], /*add_special=*/false, /*parse_special=*/false);
        CAPTURE(i);
        CAPTURE(inputs[i]);
        if (ids == expected[i]) ++enc_pass;
        else CHECK_MESSAGE(false, "got" << ids_str(ids) << "\nwant" << ids_str(expected[i]));
        const std::string back = (*tok)->decode(ids);
        if (back == inputs[i]) ++dec_pass;
        else CHECK_MESSAGE(false, "decode gave '" << back << "'");
    }
    MESSAGE(name << ": encode " << enc_pass << "/" << inputs.size() << ", decode round trip " << dec_pass << "/" << inputs.size());
    CHECK(enc_pass == inputs.size());
    CHECK(dec_pass == inputs.size());
}

}  // namespace

TEST_CASE("tokenizer: llama-spm reference vectors") { check_vocab("ggml-vocab-llama-spm.gguf", VocabKind::Spm); }
TEST_CASE("tokenizer: llama-bpe reference vectors") { check_vocab("ggml-vocab-llama-bpe.gguf", VocabKind::Bpe); }
TEST_CASE("tokenizer: gpt-2 reference vectors") { check_vocab("ggml-vocab-gpt-2.gguf", VocabKind::Bpe); }
TEST_CASE("tokenizer: qwen2 reference vectors") { check_vocab("ggml-vocab-qwen2.gguf", VocabKind::Bpe); }

TEST_CASE("tokenizer: special tokens and flags") {
    auto f = GgufFile::open(vocab_path("ggml-vocab-llama-spm.gguf"));
    REQUIRE_MESSAGE(f.ok(), f.error());
    auto tok = Tokenizer::from_gguf(**f);
    REQUIRE_MESSAGE(tok.ok(), tok.error());
    const Tokenizer& t = **tok;
    CHECK(t.bos() == 1);
    CHECK(t.eos() == 2);
    CHECK(t.add_bos());
    CHECK_FALSE(t.add_eos());
    // "" with add_special gives just BOS, as the original tokenizer.
    CHECK(t.encode("", true) == std::vector<TokenId>{1});
    CHECK(t.encode("", false).empty());
    const auto ids = t.encode("Hello world", true);
    REQUIRE(ids.size() >= 2);
    CHECK(ids[0] == 1);
    // llama.cpp's detokenize keeps the prefix space when it drops a leading BOS; we follow it.
    CHECK(t.decode(ids, /*remove_special=*/true) == " Hello world");
    CHECK(t.decode(std::vector<TokenId>(ids.begin() + 1, ids.end())) == "Hello world");
    // Control tokens in the text are plain text unless parse_special.
    const auto plain = t.encode("<s>x", false, false);
    CHECK(std::find(plain.begin(), plain.end(), 1) == plain.end());
    const auto parsed = t.encode("<s>x", false, true);
    REQUIRE(!parsed.empty());
    CHECK(parsed[0] == 1);
    CHECK(t.decode({1}, false, true) == "<s>");
    CHECK(t.decode({1}, false, false).empty());
    // Out-of-range ids decode to nothing instead of crashing.
    CHECK(t.decode({-5, 1 << 30}).empty());
}

TEST_CASE("tokenizer: byte fallback and invalid UTF-8") {
    auto f = GgufFile::open(vocab_path("ggml-vocab-llama-spm.gguf"));
    REQUIRE_MESSAGE(f.ok(), f.error());
    auto tok = Tokenizer::from_gguf(**f);
    REQUIRE_MESSAGE(tok.ok(), tok.error());
    // U+1F642 is not a Llama-2 token: it falls back to its 4 byte tokens <0xF0> ...
    const std::string s = "\xF0\x9F\x99\x82";
    const auto ids = (*tok)->encode(s, false);
    CHECK(ids.size() >= 4);
    CHECK((*tok)->decode(ids) == s);
    // Broken UTF-8 still round-trips through byte tokens.
    const std::string bad = "a\xff\xc3(b\xe2\x82";
    CHECK((*tok)->decode((*tok)->encode(bad, false)) == bad);

    auto g = GgufFile::open(vocab_path("ggml-vocab-llama-bpe.gguf"));
    REQUIRE_MESSAGE(g.ok(), g.error());
    auto bpe = Tokenizer::from_gguf(**g);
    REQUIRE_MESSAGE(bpe.ok(), bpe.error());
    CHECK((*bpe)->decode((*bpe)->encode(bad, false)) == bad);
    // parse_special: "<|begin_of_text|>" becomes the BOS id 128000.
    const auto sp = (*bpe)->encode("<|begin_of_text|>hi", false, true);
    REQUIRE(!sp.empty());
    CHECK(sp[0] == 128000);
}

TEST_CASE("unicode: byte map, classes and pre-tokenizers") {
    for (int b = 0; b < 256; ++b) {
        const std::string& u = byte_to_unicode(static_cast<uint8_t>(b));
        size_t len;
        CHECK(unicode_to_byte(utf8_decode(u, 0, &len)) == b);
        CHECK(len == u.size());
    }
    CHECK(byte_to_unicode(' ') == "\xc4\xa0");  // 'Ġ'
    CHECK(unicode_to_byte(' ') == -1);
    CHECK(cpt_flags('a') == kCptLetter);
    CHECK(cpt_flags(0x4E2D) == kCptLetter);   // 中
    CHECK(cpt_flags(0x00BD) == kCptNumber);   // ½
    CHECK(cpt_flags(0x0663) == kCptNumber);   // Arabic-Indic three
    CHECK(cpt_flags(0x3000) == kCptWhitespace);
    CHECK(cpt_flags('!') == 0);
    auto split = [](PreTokenizer k, std::string_view s) {
        std::vector<std::string> v;
        for (auto p : pretokenize(k, s)) v.emplace_back(p);
        return v;
    };
    using V = std::vector<std::string>;
    CHECK(split(PreTokenizer::Gpt2, "Hello world's  12345!!\n") == V{"Hello", " world", "'s", " ", " 12345", "!!", "\n"});
    CHECK(split(PreTokenizer::Llama3, "I'M 12345 ok\n\n  x") == V{"I", "'M", " ", "123", "45", " ok", "\n\n", " ", " x"});
    CHECK(split(PreTokenizer::Qwen2, "a 123") == V{"a", " ", "1", "2", "3"});
    // Invalid UTF-8 is kept byte for byte in the pieces.
    std::string joined;
    for (auto& p : split(PreTokenizer::Llama3, "x\xff\xc3 y\xe2\x82")) joined += p;
    CHECK(joined == "x\xff\xc3 y\xe2\x82");
}
