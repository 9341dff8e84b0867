// The built-in vocabulary (model_maker.hpp) that lets `reprise-make-model random --vocab
// builtin` make the demo model without any fixture: it loads as a byte-level BPE, every
// byte string round-trips, its merges apply, the ChatML control tokens and template
// work, and a model made with it loads from a file and runs. Needs no shared fixtures.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <unistd.h>

#include "engine/chat_template.hpp"
#include "engine/generate.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_check.hpp"
#include "engine/gguf_writer.hpp"
#include "engine/model.hpp"
#include "engine/model_maker.hpp"
#include "engine/tokenizer.hpp"

using namespace reprise::engine;

namespace {

struct Vocab {
    std::vector<uint8_t> bytes = builtin_vocab_gguf();
    std::unique_ptr<GgufFile> file;
    std::unique_ptr<Tokenizer> tok;
    Vocab() {
        auto f = GgufFile::from_memory(bytes.data(), bytes.size());
        REQUIRE_MESSAGE(f.ok(), f.error());
        file = std::move(f).value();
        auto t = Tokenizer::from_gguf(*file);
        REQUIRE_MESSAGE(t.ok(), t.error());
        tok = std::move(t).value();
    }
};

const Vocab& vocab() {
    static const Vocab v;
    return v;
}

uint64_t fnv1a(const std::vector<uint8_t>& b) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint8_t c : b) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A file in the temp directory, removed at scope exit.
struct TempFile {
    std::string path;
    explicit TempFile(const std::string& tag)
        : path((std::filesystem::temp_directory_path() / ("reprise_demo_" + tag + "_" + std::to_string(getpid()) + ".gguf")).string()) {}
    ~TempFile() { std::remove(path.c_str()); }
};

std::vector<uint8_t> make_model(const TinyLlamaShape& s) {
    GgufWriter w;
    Status st = make_tiny_llama(s, *vocab().file, &w);
    REQUIRE_MESSAGE(st.ok(), st.message());
    return w.to_bytes();
}

}  // namespace

TEST_CASE("builtin vocab: loads as a gpt-2 byte-level BPE with ChatML specials") {
    const Tokenizer& t = *vocab().tok;
    CHECK(t.kind() == VocabKind::Bpe);
    CHECK_FALSE(t.add_bos());
    CHECK_FALSE(t.add_eos());
    // Ids 0..255 are the bytes, in GPT-2's spelling.
    for (int b = 0; b < 256; ++b) {
        CHECK(t.token_text(b) == byte_to_unicode(uint8_t(b)));
        CHECK(t.token_to_piece(b) == std::string(1, char(b)));
    }
    const TokenId eot = t.find("<|endoftext|>"), start = t.find("<|im_start|>"), end = t.find("<|im_end|>");
    REQUIRE(eot != kNoToken);
    CHECK(start == eot + 1);
    CHECK(end == eot + 2);
    CHECK(size_t(end) + 1 == t.n_vocab());
    for (TokenId id : {eot, start, end}) CHECK(t.token_type(id) == TokenType::Control);
    CHECK(t.eos() == end);  // a chat reply stops at <|im_end|>
    CHECK(t.bos() == eot);
    CHECK(t.pad() == eot);
    // A modest vocabulary: a few hundred merges, not a real model's 50k-150k.
    MESSAGE("builtin vocabulary: " << t.n_vocab() << " tokens");
    CHECK(t.n_vocab() > 256 + 300);
    CHECK(t.n_vocab() < 2000);
    // Every merge's parts and result are tokens (as in a trained GPT-2 vocabulary).
    const GgufKV* merges = nullptr;
    REQUIRE(vocab().file->get_array("tokenizer.ggml.merges", GgufType::STRING, &merges).ok());
    CHECK(merges->arr_n + 256 + 3 >= t.n_vocab());
    for (std::string_view m : merges->strs) {
        const size_t sp = m.find(' ', 1);
        REQUIRE(sp != std::string_view::npos);
        const std::string l(m.substr(0, sp)), r(m.substr(sp + 1));
        CHECK(t.find(l) != kNoToken);
        CHECK(t.find(r) != kNoToken);
        CHECK(t.find(l + r) != kNoToken);
    }
    // The loader-wide check the fuzzer runs accepts it.
    CHECK(gguf_check_buffer(vocab().bytes.data(), vocab().bytes.size()).ok());
}

TEST_CASE("builtin vocab: the same bytes on every call and platform") {
    CHECK(builtin_vocab_gguf() == vocab().bytes);
    // Pinned: the trainer breaks ties by byte order only, so no platform or library
    // changes this. Update it (and say so) when the word list changes on purpose.
    CHECK(fnv1a(vocab().bytes) == 0x8f56977af580ded6ull);
}

TEST_CASE("builtin vocab: merges apply - listed words are single tokens, text compresses") {
    const Tokenizer& t = *vocab().tok;
    for (const char* w : {" the", " hello", " world", " assistant", " cache", " question", " today"}) {
        const auto ids = t.encode(w, false);
        CHECK_MESSAGE(ids.size() == 1, "'" << w << "' -> " << ids.size() << " tokens");
    }
    const std::string text = "Hello, how are you today? I think the cache will answer this question in no time.";
    const auto ids = t.encode(text, false);
    MESSAGE(text.size() << " bytes -> " << ids.size() << " tokens");
    CHECK(ids.size() * 2 < text.size());
    CHECK(t.decode(ids) == text);
}

TEST_CASE("builtin vocab: any text or bytes round-trip through encode/decode") {
    const Tokenizer& t = *vocab().tok;
    const std::vector<std::string> texts = {
        "",
        " ",
        "Hello world",
        "  leading and trailing spaces  \n\n\ttabs\r\n",
        "héllo wörld, ça va? Ünïcödé — “quotes” … €100",
        "日本語のテキスト、中文文本，한국어 텍스트",
        "Здравствуй, мир! Γειά σου Κόσμε! مرحبا بالعالم שלום עולם",
        "emoji: 👋🏽 🎉🎉 👨‍👩‍👧‍👦 🏳️‍🌈 and 🇫🇷",
        "they're, we've, I'll, it's, she'd, I'm 12345 3.14159 0x1F",
        "<|im_start|> written in text is not special unless asked <|im_end|><|endoftext|>",
        std::string("nul \0 inside", 12),
    };
    for (const std::string& s : texts) {
        CHECK(t.decode(t.encode(s, false)) == s);
        CHECK(t.decode(t.encode(s, true), true) == s);
    }
    // Without special parsing, special-looking text is plain bytes.
    for (TokenId id : t.encode(texts[9], false)) CHECK(t.token_type(id) != TokenType::Control);
    // Arbitrary bytes, including invalid UTF-8 (lone continuation bytes, truncated
    // sequences, 0xFF): every byte has a token, so nothing is lost.
    std::mt19937_64 rng(42);
    for (int i = 0; i < 500; ++i) {
        std::string s(rng() % 64, '\0');
        for (char& c : s) c = char(rng() & 0xFF);
        const auto ids = t.encode(s, false);
        CHECK(ids.size() <= s.size());
        const std::string back = t.decode(ids);
        REQUIRE_MESSAGE(back == s, "case " << i);
    }
    std::string all;
    for (int b = 0; b < 256; ++b) all += char(b);
    CHECK(t.decode(t.encode(all, false)) == all);
}

TEST_CASE("builtin vocab: ChatML control tokens parse as single tokens when asked") {
    const Tokenizer& t = *vocab().tok;
    const TokenId start = t.find("<|im_start|>"), end = t.find("<|im_end|>");
    const std::string s = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n";
    const auto ids = t.encode(s, false, true);
    REQUIRE(ids.size() > 4);
    CHECK(ids.front() == start);
    CHECK(std::count(ids.begin(), ids.end(), start) == 2);
    CHECK(std::count(ids.begin(), ids.end(), end) == 1);
    CHECK(t.decode(ids, false, true) == s);
    CHECK(t.decode(ids) == "user\nHi there\nassistant\n");  // control tokens print only on request
    CHECK(t.encode("<|im_end|>", false, true) == std::vector<TokenId>{end});
    // Not parsed: many byte-level tokens, none of them the control token.
    const auto plain = t.encode("<|im_end|>", false, false);
    CHECK(plain.size() > 1);
    CHECK(std::find(plain.begin(), plain.end(), end) == plain.end());
}

TEST_CASE("builtin vocab: the chat template is detected as chatml and renders") {
    const GgufFile& f = *vocab().file;
    auto fam = detect_chat_family(f);
    REQUIRE_MESSAGE(fam.ok(), fam.error());
    CHECK(*fam == ChatFamily::Chatml);
    std::string_view tmpl;
    REQUIRE(f.get_string("tokenizer.chat_template", &tmpl).ok());
    CHECK(tmpl.find("{% for message in messages %}") != std::string_view::npos);  // a real template, not the bare name
    const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hello 👋"}};
    auto prompt = apply_chat_template(tmpl, msgs);
    REQUIRE_MESSAGE(prompt.ok(), prompt.error());
    CHECK(*prompt == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello 👋<|im_end|>\n<|im_start|>assistant\n");
    const auto ids = vocab().tok->encode(*prompt, true, true);
    CHECK(ids.front() == vocab().tok->find("<|im_start|>"));  // no BOS: add_bos_token is false
    CHECK(vocab().tok->decode(ids, false, true) == *prompt);
}

TEST_CASE("builtin vocab: a model made with it loads from a file and runs") {
    TinyLlamaShape s;
    s.n_embd = 64;
    s.n_ff = 128;
    s.n_layer = 2;
    s.n_ctx = 128;
    s.type = GgmlType::Q8_0;
    s.name = "reprise-demo-test";
    GgufWriter w;
    REQUIRE(make_tiny_llama(s, *vocab().file, &w).ok());
    TempFile tf("load");
    REQUIRE(w.write_file(tf.path).ok());

    auto gf = GgufFile::open(tf.path);
    REQUIRE_MESSAGE(gf.ok(), gf.error());
    std::string_view name;
    REQUIRE((*gf)->get_string("general.name", &name).ok());
    CHECK(name == "reprise-demo-test");
    auto tok = Tokenizer::from_gguf(**gf);
    REQUIRE_MESSAGE(tok.ok(), tok.error());
    CHECK((*tok)->n_vocab() == vocab().tok->n_vocab());
    CHECK((*tok)->eos() == (*tok)->find("<|im_end|>"));
    auto fam = detect_chat_family(**gf);
    REQUIRE(fam.ok());
    CHECK(*fam == ChatFamily::Chatml);

    auto m = Model::load(tf.path);
    REQUIRE_MESSAGE(m.ok(), m.error());
    const Model& model = **m;
    REQUIRE(size_t(model.n_vocab()) == (*tok)->n_vocab());
    auto prompt_text = apply_chat_template(ChatFamily::Chatml, {{"user", "Hello!"}});
    REQUIRE(prompt_text.ok());
    const std::vector<int32_t> prompt = (*tok)->encode(*prompt_text, true, true);
    auto kv = model.new_kv_cache();
    std::vector<float> logits(size_t(model.n_vocab()));
    REQUIRE(model.forward(*kv, prompt.data(), int(prompt.size()), 0, logits.data()).ok());
    CHECK(std::all_of(logits.begin(), logits.end(), [](float x) { return std::isfinite(x); }));
    CHECK(*std::max_element(logits.begin(), logits.end()) > *std::min_element(logits.begin(), logits.end()));

    GenerateParams p;
    p.max_tokens = 8;
    p.stop_tokens = {(*tok)->eos()};
    auto g = generate(model, prompt, p);
    REQUIRE_MESSAGE(g.ok(), g.error());
    CHECK(g->tokens.size() <= 8);
    for (int32_t id : g->tokens) CHECK(size_t(id) < (*tok)->n_vocab());
}

TEST_CASE("builtin vocab: the same seed gives a bit-identical model file") {
    TinyLlamaShape s;
    s.n_layer = 1;
    s.type = GgmlType::Q8_0;
    const std::vector<uint8_t> a = make_model(s), b = make_model(s);
    CHECK(a == b);
    GgufWriter w;
    REQUIRE(make_tiny_llama(s, *vocab().file, &w).ok());
    TempFile f1("det1"), f2("det2");
    REQUIRE(w.write_file(f1.path).ok());
    REQUIRE(w.write_file(f2.path).ok());
    const std::string b1 = slurp(f1.path);
    CHECK(b1.size() == a.size());
    CHECK(b1 == slurp(f2.path));
    CHECK(b1 == std::string(a.begin(), a.end()));
    TinyLlamaShape s2 = s;
    s2.seed = 2;
    CHECK(make_model(s2) != a);
}
