// The qwen2 and qwen3 architectures (loader, CPU forward pass, NeoX RoPE), the model
// generator's architectures and K-quant mixes, and the Qwen chat templates.
//
// Tolerances:
// - F32 engine vs the naive reference (qwen_ref.hpp): 1e-4 of the largest |logit|, as
//   for llama (model_test.cpp): float accumulation against double, a few layers deep,
//   ~1e-6; a real bug (a bias left out, the wrong RoPE pairs, a missing head norm, Q
//   read at the wrong width) is of order 1. Measured ~5e-7.
// - Batch prefill vs token by token, and thread counts: bit-identical (the engine's
//   batch invariance: every (row, token) is computed the same way).
// - llama.cpp itself: a scratch comparison (node-llama-cpp, teacher forcing on its
//   greedy path, F32) of generated qwen2/qwen3 models (head size 32 != 64/4, GQA, tied
//   and separate output) gave max |dlogit| 1.5e-5; the parity suite runs it for real.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "engine/chat_template.hpp"
#include "engine/gguf_check.hpp"
#include "engine/gguf.hpp"
#include "engine/gguf_writer.hpp"
#include "engine/kernels/rope.hpp"
#include "engine/llama_meta.hpp"
#include "engine/model.hpp"
#include "engine/model_maker.hpp"
#include "engine/tokenizer.hpp"
#include "llama_ref.hpp"
#include "qwen_ref.hpp"
#include "tests/engine/tiny_engine.hpp"

using namespace reprise::engine;
using engine_test::QwenRef;
using engine_test::rel_max_err;

namespace {

struct MemGguf {
    std::vector<uint8_t> bytes;
    std::unique_ptr<GgufFile> file;
};

const GgufFile& builtin_vocab() {
    static const std::vector<uint8_t> bytes = builtin_vocab_gguf();
    static auto f = GgufFile::from_memory(bytes.data(), bytes.size());
    REQUIRE_MESSAGE(f.ok(), f.error());
    return **f;
}

MemGguf finish(const GgufWriter& w) {
    MemGguf m;
    m.bytes = w.to_bytes();
    auto f = GgufFile::from_memory(m.bytes.data(), m.bytes.size());
    REQUIRE_MESSAGE(f.ok(), f.error());
    m.file = std::move(f).value();
    return m;
}

GgufWriter writer(const TinyLlamaShape& s) {
    GgufWriter w;
    Status st = make_tiny_llama(s, builtin_vocab(), &w);
    REQUIRE_MESSAGE(st.ok(), st.message());
    return w;
}

MemGguf make(const TinyLlamaShape& s) { return finish(writer(s)); }

// A small qwen model: GQA (4 heads, 2 KV heads), two layers.
TinyLlamaShape qwen_shape(ModelArch arch, uint32_t head_dim = 0, bool tied = false) {
    TinyLlamaShape s;
    s.arch = arch;
    s.n_embd = 64, s.n_ff = 128, s.n_layer = 2, s.n_head = 4, s.n_head_kv = 2, s.n_ctx = 64;
    s.head_dim = head_dim;
    s.tie_output = tied;
    return s;
}

std::unique_ptr<Model> load(const GgufFile& f, int threads = 1) {
    ModelOptions o;
    o.n_threads = threads;
    auto m = Model::from_gguf(f, o);
    REQUIRE_MESSAGE(m.ok(), m.error());
    return std::move(m).value();
}

std::string load_error(const GgufWriter& w) {
    MemGguf g = finish(w);
    auto m = Model::from_gguf(*g.file);
    REQUIRE_FALSE(m.ok());
    return m.error();
}

int argmax(const float* x, int n) { return int(std::max_element(x, x + n) - x); }

// The prompt as one batch (every position's logits) and then a greedy continuation
// token by token, each position against the reference. Returns the worst error.
double worst_vs_ref(const Model& m, QwenRef& ref, const std::vector<int32_t>& prompt, int n_gen) {
    const int V = m.n_vocab();
    REQUIRE(V == ref.vocab);
    auto kv = m.new_kv_cache(int(prompt.size()) + n_gen);
    ref.reset();
    std::vector<float> logits(prompt.size() * size_t(V));
    REQUIRE(m.forward(*kv, prompt.data(), int(prompt.size()), 0, logits.data(), true).ok());
    double worst = 0;
    std::vector<float> r;
    for (size_t t = 0; t < prompt.size(); ++t) {
        r = ref.forward(prompt[t], int(t));
        worst = std::max(worst, rel_max_err(&logits[t * V], r.data(), size_t(V)));
    }
    std::vector<float> last(logits.end() - V, logits.end());
    for (int i = 0, pos = int(prompt.size()); i < n_gen; ++i, ++pos) {
        const int32_t tok = argmax(last.data(), V);
        CHECK(tok == argmax(r.data(), V));
        REQUIRE(m.forward(*kv, &tok, 1, pos, last.data()).ok());
        r = ref.forward(tok, pos);
        worst = std::max(worst, rel_max_err(last.data(), r.data(), size_t(V)));
    }
    return worst;
}

// Relabels a generated file as architecture `arch` (every hyper-parameter key under the
// new prefix too), keeping its tensors: how a file missing an architecture's tensors,
// or carrying another's, is made.
void relabel(GgufWriter& w, const TinyLlamaShape& s, const std::string& arch) {
    const uint32_t hd = s.head_dim ? s.head_dim : s.n_embd / s.n_head;
    w.set_string("general.architecture", arch);
    w.set_u32(arch + ".context_length", s.n_ctx);
    w.set_u32(arch + ".embedding_length", s.n_embd);
    w.set_u32(arch + ".feed_forward_length", s.n_ff);
    w.set_u32(arch + ".block_count", s.n_layer);
    w.set_u32(arch + ".attention.head_count", s.n_head);
    w.set_u32(arch + ".attention.head_count_kv", s.n_head_kv);
    w.set_u32(arch + ".attention.key_length", hd);
    w.set_u32(arch + ".rope.dimension_count", hd);
    w.set_f32(arch + ".attention.layer_norm_rms_epsilon", s.rms_eps);
}

uint64_t fnv1a(const std::vector<uint8_t>& b) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint8_t c : b) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

}  // namespace

TEST_CASE("qwen: generated qwen2 and qwen3 models load with their hyper-parameters and tensors") {
    SUBCASE("qwen2") {
        MemGguf g = make(qwen_shape(ModelArch::Qwen2));
        LlamaHParams hp;
        REQUIRE(llama_read_hparams(*g.file, &hp).ok());
        CHECK(hp.arch == ModelArch::Qwen2);
        CHECK(hp.rope_neox);
        CHECK(hp.rope_freq_base == 1e6f);  // the generator's qwen default
        CHECK(hp.head_dim() == 16);
        LlamaTensors t;
        Status st = llama_find_tensors(*g.file, hp, &t);
        REQUIRE_MESSAGE(st.ok(), st.message());
        REQUIRE(t.layers[1].bq);
        CHECK(t.layers[1].bq->ne[0] == 64);
        CHECK(t.layers[1].bk->ne[0] == 32);
        CHECK(t.layers[1].bv->ne[0] == 32);
        CHECK(t.layers[1].q_norm == nullptr);
        auto m = load(*g.file);
        CHECK(m->layer(1).bq.size() == 64);
        CHECK(m->layer(1).bk.size() == 32);
        CHECK(m->layer(1).q_norm.empty());
        CHECK(gguf_check_buffer(g.bytes.data(), g.bytes.size()).ok());
    }
    SUBCASE("qwen3, head size 32 with n_embd / n_head = 16") {
        MemGguf g = make(qwen_shape(ModelArch::Qwen3, 32, true));
        LlamaHParams hp;
        REQUIRE(llama_read_hparams(*g.file, &hp).ok());
        CHECK(hp.arch == ModelArch::Qwen3);
        CHECK(hp.rope_neox);
        CHECK(hp.head_dim() == 32);
        CHECK(hp.n_embd_q() == 128);
        CHECK(hp.n_embd_kv() == 64);
        CHECK(hp.n_rot == 32);
        LlamaTensors t;
        Status st = llama_find_tensors(*g.file, hp, &t);
        REQUIRE_MESSAGE(st.ok(), st.message());
        CHECK(t.tied_output);
        CHECK(t.layers[0].wq->ne[1] == 128);
        CHECK(t.layers[0].wo->ne[0] == 128);
        CHECK(t.layers[0].q_norm->ne[0] == 32);
        CHECK(t.layers[0].bq == nullptr);
        auto m = load(*g.file);
        CHECK(m->layer(0).q_norm.size() == 32);
        CHECK(m->layer(0).k_norm.size() == 32);
        CHECK(m->layer(0).bq.empty());
        CHECK(m->tied_output());
        CHECK(gguf_check_buffer(g.bytes.data(), g.bytes.size()).ok());
    }
    SUBCASE("llama keeps the llama layout: no extras, adjacent RoPE pairs") {
        MemGguf g = make(TinyLlamaShape{});
        auto m = load(*g.file);
        CHECK(m->hparams().arch == ModelArch::Llama);
        CHECK_FALSE(m->hparams().rope_neox);
        CHECK(m->hparams().rope_freq_base == 10000.0f);
        CHECK(m->layer(0).bq.empty());
        CHECK(m->layer(0).q_norm.empty());
    }
    SUBCASE("a bias in a llama file is refused by name, not ignored") {
        GgufWriter w = writer(qwen_shape(ModelArch::Llama));
        const std::vector<float> zeros(64, 0.0f);
        REQUIRE(w.add_tensor("blk.1.attn_output.bias", uint32_t(GgmlType::F32), {64}, zeros.data(), zeros.size() * 4).ok());
        CHECK(load_error(w) == "llama: tensor 'blk.1.attn_output.bias' is not supported in a llama model");
        REQUIRE(w.add_tensor("blk.0.attn_v.bias", uint32_t(GgmlType::F32), {32}, zeros.data(), 32 * 4).ok());
        CHECK(load_error(w) == "llama: tensor 'blk.0.attn_v.bias' is not supported in a llama model");
    }
}

TEST_CASE("qwen: F32 forward matches the naive reference (1e-4), prefill and decode") {
    struct Case { std::string what; TinyLlamaShape s; };
    const Case cases[] = {
        {"qwen2", qwen_shape(ModelArch::Qwen2)},
        {"qwen2 tied", qwen_shape(ModelArch::Qwen2, 0, true)},
        {"qwen3", qwen_shape(ModelArch::Qwen3)},
        {"qwen3 head 32, tied", qwen_shape(ModelArch::Qwen3, 32, true)},
    };
    for (const Case& c : cases) {
        CAPTURE(c.what);
        MemGguf g = make(c.s);
        QwenRef ref;
        REQUIRE(QwenRef::from_gguf(*g.file, &ref));
        auto m = load(*g.file);
        const double worst = worst_vs_ref(*m, ref, {5, 300, 17, 250, 400, 33, 90}, 8);
        MESSAGE(c.what << ": max relative logit error vs reference " << worst);
        CHECK(worst < 1e-4);
    }
}

TEST_CASE("qwen: the reference tells the architectures' features apart (negative control)") {
    // The reference without qwen2's biases, or without qwen3's head norms, is far from
    // the engine: the 1e-4 above is a real check of each feature.
    for (ModelArch arch : {ModelArch::Qwen2, ModelArch::Qwen3}) {
        MemGguf g = make(qwen_shape(arch));
        QwenRef ref;
        REQUIRE(QwenRef::from_gguf(*g.file, &ref));
        for (auto& L : ref.layers) L.bq.clear(), L.bk.clear(), L.bv.clear(), L.q_norm.clear(), L.k_norm.clear();
        auto m = load(*g.file);
        const std::vector<int32_t> prompt = {5, 300, 17, 250};
        std::vector<float> logits(prompt.size() * size_t(m->n_vocab()));
        auto kv = m->new_kv_cache(8);
        REQUIRE(m->forward(*kv, prompt.data(), 4, 0, logits.data(), true).ok());
        double worst = 0;
        for (int t = 0; t < 4; ++t) {
            auto r = ref.forward(prompt[size_t(t)], t);
            worst = std::max(worst, rel_max_err(&logits[size_t(t) * m->n_vocab()], r.data(), r.size()));
        }
        CAPTURE(model_arch_name(arch));
        CHECK(worst > 1e-2);
    }
}

TEST_CASE("qwen3: batch prefill equals token by token and any thread count, bit for bit") {
    MemGguf g = make(qwen_shape(ModelArch::Qwen3, 32));
    auto m1 = load(*g.file, 1), m3 = load(*g.file, 3);
    const int V = m1->n_vocab();
    const std::vector<int32_t> prompt = {7, 8, 9, 300, 17, 250, 400, 33, 90, 12, 500};
    const size_t n = prompt.size();
    std::vector<float> batch(n * V), seq(n * V), batch3(n * V), chunks(n * V);
    auto kv = m1->new_kv_cache(32);
    REQUIRE(m1->forward(*kv, prompt.data(), int(n), 0, batch.data(), true).ok());
    auto kv2 = m1->new_kv_cache(32);
    for (size_t t = 0; t < n; ++t) REQUIRE(m1->forward(*kv2, &prompt[t], 1, int(t), &seq[t * V]).ok());
    CHECK(batch == seq);
    auto kv3 = m3->new_kv_cache(32);
    REQUIRE(m3->forward(*kv3, prompt.data(), int(n), 0, batch3.data(), true).ok());
    CHECK(batch3 == batch);
    auto kv4 = m3->new_kv_cache(32);  // 4 + 7 tokens
    REQUIRE(m3->forward(*kv4, prompt.data(), 4, 0, chunks.data(), true).ok());
    REQUIRE(m3->forward(*kv4, prompt.data() + 4, int(n) - 4, 4, &chunks[4 * size_t(V)], true).ok());
    CHECK(chunks == batch);
}

TEST_CASE("qwen: other architectures are refused by name") {
    GgufWriter w = writer(qwen_shape(ModelArch::Qwen2));
    w.set_string("general.architecture", "gemma2");
    const std::string e = load_error(w);
    CHECK(e == "model: general.architecture 'gemma2' is not supported (supported: llama, qwen2, qwen3)");
}

TEST_CASE("qwen: missing, extra and mis-shaped tensors are errors that name the tensor") {
    SUBCASE("qwen3 weights read as qwen2: the biases are missing") {
        const TinyLlamaShape s = qwen_shape(ModelArch::Qwen3);
        GgufWriter w = writer(s);
        relabel(w, s, "qwen2");
        CHECK(load_error(w) == "qwen2: missing tensor 'blk.0.attn_q.bias'");
    }
    SUBCASE("qwen2 weights read as qwen3: biases qwen3 does not have") {
        const TinyLlamaShape s = qwen_shape(ModelArch::Qwen2);
        GgufWriter w = writer(s);
        relabel(w, s, "qwen3");
        CHECK(load_error(w) == "qwen3: tensor 'blk.0.attn_q.bias' is not supported in a qwen3 model");
    }
    SUBCASE("llama weights read as qwen3: no head norms") {
        const TinyLlamaShape s = qwen_shape(ModelArch::Llama);
        GgufWriter w = writer(s);
        relabel(w, s, "qwen3");
        CHECK(load_error(w) == "qwen3: missing tensor 'blk.0.attn_q_norm.weight'");
    }
    SUBCASE("a key length the matrices do not have") {
        GgufWriter w = writer(qwen_shape(ModelArch::Qwen3, 32));
        w.set_u32("qwen3.attention.key_length", 16);
        w.set_u32("qwen3.attention.value_length", 16);
        w.set_u32("qwen3.rope.dimension_count", 16);
        CHECK(load_error(w) == "qwen3: tensor 'blk.0.attn_q.weight' has shape [64, 128], expected [64, 64]");
    }
    SUBCASE("a bias of the wrong length") {
        const TinyLlamaShape s = qwen_shape(ModelArch::Llama);
        GgufWriter w = writer(s);
        const std::vector<float> bq(64, 0.0f), bk(31, 0.0f);
        REQUIRE(w.add_tensor("blk.0.attn_q.bias", uint32_t(GgmlType::F32), {64}, bq.data(), bq.size() * 4).ok());
        REQUIRE(w.add_tensor("blk.0.attn_k.bias", uint32_t(GgmlType::F32), {31}, bk.data(), bk.size() * 4).ok());
        relabel(w, s, "qwen2");
        CHECK(load_error(w) == "qwen2: tensor 'blk.0.attn_k.bias' has shape [31], expected [32]");
    }
    SUBCASE("value_length unlike key_length") {
        GgufWriter w = writer(qwen_shape(ModelArch::Qwen3, 32));
        w.set_u32("qwen3.attention.value_length", 16);
        CHECK(load_error(w).find("qwen3: attention.value_length 16 differs from the key length 32") == 0);
    }
}

TEST_CASE("qwen: rope_neox_f32 rotates the half-split pairs by rope_f32's angles, past n_rot untouched") {
    const int head_dim = 12, n_rot = 8, pos = 5;
    std::vector<float> x(2 * head_dim), ref(x.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = ref[i] = 0.1f * float(i) - 0.7f;
    rope_neox_f32(x.data(), 2, head_dim, n_rot, pos, 10000.0f);
    std::vector<float> cs(n_rot);
    rope_cos_sin(cs.data(), n_rot, pos, 10000.0f);
    for (int h = 0; h < 2; ++h) {
        const float* r = &ref[size_t(h) * head_dim];
        const float* o = &x[size_t(h) * head_dim];
        for (int i = 0; i < n_rot / 2; ++i) {
            const float c = cs[size_t(2 * i)], s = cs[size_t(2 * i + 1)];
            CHECK(o[i] == r[i] * c - r[i + n_rot / 2] * s);
            CHECK(o[i + n_rot / 2] == r[i] * s + r[i + n_rot / 2] * c);
        }
        for (int i = n_rot; i < head_dim; ++i) CHECK(o[i] == r[i]);
    }
    // The angles are ggml's: pair i at pos * base^(-2i/n_rot) (here within float rounding).
    CHECK(std::fabs(cs[2] - std::cos(5.0 * std::pow(10000.0, -2.0 / 8))) < 1e-6);
}

TEST_CASE("model_maker: Q4_K_M and Q5_K_M type each tensor as llama.cpp's llama_tensor_get_type") {
    // The expectations are llama-quant.cpp's rules; they were also checked against
    // llama.cpp's own llama_model_quantize (node-llama-cpp's libllama) on F32 files from
    // this generator, llama/qwen2/qwen3, tied and not, 256-multiple rows and not: the
    // per-tensor types were identical.
    TinyLlamaShape s;
    s.n_embd = 256, s.n_ff = 512, s.n_layer = 8, s.n_head = 8, s.n_head_kv = 2;
    s.mix = QuantMix::Q4_K_M;
    // use_more_bits over 8 layers: 0 (first eighth), 7 (last eighth), 3 and 6 ((i-1)%3 == 2).
    for (int l = 0; l < 8; ++l) {
        const bool more = l == 0 || l == 3 || l == 6 || l == 7;
        const std::string p = "blk." + std::to_string(l) + ".";
        CAPTURE(l);
        CHECK(model_tensor_type(s, p + "attn_v.weight", l, 256) == (more ? GgmlType::Q6_K : GgmlType::Q4_K));
        CHECK(model_tensor_type(s, p + "ffn_down.weight", l, 512) == (more ? GgmlType::Q6_K : GgmlType::Q4_K));
        CHECK(model_tensor_type(s, p + "attn_q.weight", l, 256) == GgmlType::Q4_K);
        CHECK(model_tensor_type(s, p + "attn_k.weight", l, 256) == GgmlType::Q4_K);
        CHECK(model_tensor_type(s, p + "attn_output.weight", l, 256) == GgmlType::Q4_K);
        CHECK(model_tensor_type(s, p + "ffn_gate.weight", l, 256) == GgmlType::Q4_K);
        CHECK(model_tensor_type(s, p + "ffn_up.weight", l, 256) == GgmlType::Q4_K);
    }
    CHECK(model_tensor_type(s, "output.weight", -1, 256) == GgmlType::Q6_K);
    CHECK(model_tensor_type(s, "token_embd.weight", -1, 256) == GgmlType::Q4_K);
    // Rows not a multiple of 256 (Qwen2.5-0.5B's 896): Q4_K -> Q5_0, Q6_K -> Q8_0, and
    // the output straight to Q8_0.
    CHECK(model_tensor_type(s, "blk.1.attn_q.weight", 1, 896) == GgmlType::Q5_0);
    CHECK(model_tensor_type(s, "blk.0.attn_v.weight", 0, 896) == GgmlType::Q8_0);
    CHECK(model_tensor_type(s, "output.weight", -1, 896) == GgmlType::Q8_0);
    s.tie_output = true;  // the embedding is the output: typed as the output
    CHECK(model_tensor_type(s, "token_embd.weight", -1, 256) == GgmlType::Q6_K);
    CHECK(model_tensor_type(s, "token_embd.weight", -1, 896) == GgmlType::Q8_0);
    s.mix = QuantMix::Q5_K_M;
    s.tie_output = false;
    CHECK(model_tensor_type(s, "blk.1.attn_q.weight", 1, 256) == GgmlType::Q5_K);
    CHECK(model_tensor_type(s, "blk.1.attn_q.weight", 1, 896) == GgmlType::Q5_1);
    CHECK(model_tensor_type(s, "blk.3.attn_v.weight", 3, 256) == GgmlType::Q6_K);
    CHECK(model_file_type(s) == 17);
    // Pure K-quants fall back the same way; 32-block types stay as asked.
    s.mix = QuantMix::Pure;
    s.type = GgmlType::Q6_K;
    CHECK(model_tensor_type(s, "output.weight", -1, 896) == GgmlType::Q8_0);
    CHECK(model_tensor_type(s, "output.weight", -1, 256) == GgmlType::Q6_K);
    s.type = GgmlType::Q4_1;
    CHECK(model_tensor_type(s, "blk.0.attn_v.weight", 0, 896) == GgmlType::Q4_1);
}

TEST_CASE("model_maker: a Q4_K_M qwen2 file is written with the mix's types and file type 15") {
    TinyLlamaShape s = qwen_shape(ModelArch::Qwen2);
    s.n_embd = 256, s.n_ff = 320, s.n_head = 8, s.n_head_kv = 2, s.n_layer = 2;
    s.mix = QuantMix::Q4_K_M;
    MemGguf g = make(s);
    uint32_t ft = 0;
    REQUIRE(g.file->get_u32("general.file_type", &ft).ok());
    CHECK(ft == 15);
    auto type_of = [&](const char* name) {
        const GgufTensorInfo* t = g.file->find_tensor(name);
        REQUIRE_MESSAGE(t, name);
        return GgmlType(t->type);
    };
    CHECK(type_of("token_embd.weight") == GgmlType::Q4_K);
    CHECK(type_of("output.weight") == GgmlType::Q6_K);
    CHECK(type_of("blk.0.attn_q.weight") == GgmlType::Q4_K);
    CHECK(type_of("blk.0.attn_v.weight") == GgmlType::Q4_K);  // use_more_bits(0, 2) is false
    CHECK(type_of("blk.1.attn_v.weight") == GgmlType::Q6_K);  // 1 >= 7*2/8
    CHECK(type_of("blk.1.ffn_down.weight") == GgmlType::Q8_0);  // Q6_K on 320-wide rows
    CHECK(type_of("blk.0.ffn_down.weight") == GgmlType::Q5_0);  // Q4_K on 320-wide rows
    CHECK(type_of("blk.0.attn_q.bias") == GgmlType::F32);
    CHECK(type_of("blk.0.attn_norm.weight") == GgmlType::F32);
    // It loads: every type of the mix is one the loader takes.
    LlamaHParams hp;
    REQUIRE(llama_read_hparams(*g.file, &hp).ok());
    LlamaTensors t;
    Status st = llama_find_tensors(*g.file, hp, &t);
    CHECK_MESSAGE(st.ok(), st.message());
    auto m = load(*g.file);
    CHECK(m->layer(1).down.type == GgmlType::Q8_0);  // kept as stored, no expansion
    const int32_t toks[] = {5, 6, 7, 8};
    std::vector<float> logits(size_t(m->n_vocab()));
    auto kv = m->new_kv_cache(8);
    REQUIRE(m->forward(*kv, toks, 4, 0, logits.data()).ok());
    CHECK(std::all_of(logits.begin(), logits.end(), [](float x) { return std::isfinite(x); }));
    CHECK(*std::max_element(logits.begin(), logits.end()) > 1.0f);  // real weights, not the placeholders' zeros
}

TEST_CASE("model_maker: llama files are byte for byte what they were before the qwen architectures") {
    // FNV-1a of files made before this change (reprise-make-model random --vocab builtin
    // with the same options): other tests and the llama.cpp comparison rely on them.
    TinyLlamaShape a;  // --type f32
    CHECK(fnv1a(writer(a).to_bytes()) == 0x0691a0a59b3bc209ull);
    TinyLlamaShape b;  // --type q8_0 --tied
    b.type = GgmlType::Q8_0, b.tie_output = true;
    CHECK(fnv1a(writer(b).to_bytes()) == 0xad56b8f7e3ebced9ull);
    TinyLlamaShape c;  // --type q4_0 --dim 128 --hidden 256 --layers 3
    c.type = GgmlType::Q4_0, c.n_embd = 128, c.n_ff = 256, c.n_layer = 3;
    CHECK(fnv1a(writer(c).to_bytes()) == 0xb8fcf4919fcdd0c6ull);
    TinyLlamaShape d;  // --type f16 --late-layer-scale 0.05 --late-from 1
    d.type = GgmlType::F16, d.late_layer_scale = 0.05f, d.late_from = 1;
    CHECK(fnv1a(writer(d).to_bytes()) == 0x22e99fb9a7d655c7ull);
}

TEST_CASE("qwen: Qwen2.5's and Qwen3's chat templates are chatml, as llama.cpp detects them") {
    for (ModelArch arch : {ModelArch::Qwen2, ModelArch::Qwen3}) {
        CAPTURE(model_arch_name(arch));
        const std::string_view tmpl = qwen_chat_template(arch);
        REQUIRE(tmpl.find("<|im_start|>") != std::string_view::npos);
        auto fam = detect_chat_family(tmpl);
        REQUIRE_MESSAGE(fam.ok(), fam.error());
        CHECK(*fam == ChatFamily::Chatml);
        // Rendered as llama.cpp's chatml (no default system message, unlike the Jinja).
        auto text = apply_chat_template(tmpl, {{"system", "Be brief."}, {"user", "Hi"}});
        REQUIRE(text.ok());
        CHECK(*text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        // The generated qwen model carries it (its vocabulary has <|im_start|>).
        MemGguf g = make(qwen_shape(arch));
        std::string_view in_file;
        REQUIRE(g.file->get_string("tokenizer.chat_template", &in_file).ok());
        CHECK(in_file == tmpl);
        auto ff = detect_chat_family(*g.file);
        REQUIRE(ff.ok());
        CHECK(*ff == ChatFamily::Chatml);
    }
    // Qwen2-Instruct's (before 2.5), as its tokenizer_config.json has it.
    constexpr std::string_view kQwen2Instruct =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou "
        "are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
        "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    auto q2 = detect_chat_family(kQwen2Instruct);
    REQUIRE(q2.ok());
    CHECK(*q2 == ChatFamily::Chatml);
    CHECK(qwen_chat_template(ModelArch::Qwen2).find("You are Qwen, created by Alibaba Cloud.") != std::string_view::npos);
    CHECK(qwen_chat_template(ModelArch::Qwen3).find("<think>") != std::string_view::npos);
}

TEST_CASE("qwen2 and qwen3 (Q8_0) through the scheduler: samples identical alone, batched and in small prefill chunks") {
    using namespace reprise::engine::test;
    for (ModelArch arch : {ModelArch::Qwen2, ModelArch::Qwen3}) {
        CAPTURE(model_arch_name(arch));
        TinyLlamaShape shape = tiny_shape(2, 256, 5, std::string("qwen-sched-") + model_arch_name(arch));
        shape.arch = arch;
        shape.n_head_kv = 2;
        if (arch == ModelArch::Qwen3) shape.head_dim = 32;
        TinyEngine t = TinyEngine::make(shape);
        std::filesystem::remove(t.path);  // the model and tokenizer keep their own copies
        auto run = [&](const std::vector<int>& which, int budget) {
            SchedulerOptions o;
            o.n_ctx = 256, o.block_size = 16, o.max_batch_tokens = budget, o.max_sequences = 16;
            Scheduler s(*t.model, *t.tokenizer, {}, o);
            std::vector<std::shared_ptr<JobOutcome>> outs;
            for (int i : which) {
                const Submission sub = job(2, 12, i % 2 ? 1.0f : 0.0f, mix64(uint64_t(i) + 100));
                outs.push_back(std::make_shared<JobOutcome>());
                s.add(sub, collect(outs.back(), sub.n), random_prompt(uint64_t(i) + 7, 5 + 9 * i));
            }
            run_to_idle(s);
            std::vector<std::vector<TokenId>> tokens;
            for (auto& out : outs) {
                REQUIRE(out->done);
                REQUIRE_MESSAGE(out->ok, out->error.message);
                for (auto& sample : out->completion.samples) tokens.push_back(sample.tokens);
            }
            return tokens;
        };
        std::vector<std::vector<TokenId>> alone;
        for (int i = 0; i < 4; ++i)
            for (auto& x : run({i}, 512)) alone.push_back(x);
        CHECK(run({0, 1, 2, 3}, 512) == alone);
        CHECK(run({0, 1, 2, 3}, 7) == alone);
    }
}
