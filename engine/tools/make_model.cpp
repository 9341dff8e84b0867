// reprise-make-model: writes tiny deterministic Llama-family GGUF files (llama, qwen2,
// qwen3) for tests and benchmarks, the demo model (random weights: it runs, it does not
// talk sense), or converts a llama2.c checkpoint.
//   reprise-make-model random --vocab VOCAB.gguf|builtin --out OUT.gguf [--arch llama
//       --dim 64 --hidden 192 --layers 2 --heads 4 --kv-heads 2 --head-dim N --ctx 256
//       --type TYPE --rope-base X --seed 1 --logit-scale 8 --tied --name NAME
//       --late-layer-scale 1 --late-from 0]
//   --arch llama|qwen2|qwen3: qwen2 adds Q/K/V biases, qwen3 per-head Q/K norms and
//   --head-dim (its attention.key_length; default dim/heads); both NeoX RoPE with a
//   default --rope-base of 1e6 (llama: 10000). model_maker.hpp says how.
//   --type f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|q6_k, or the llama.cpp mixes
//   q4_k_m|q5_k_m (per-tensor types as llama-quant.cpp chooses them; K-quant rows that
//   are not a multiple of 256 fall back to Q5_0/Q5_1/Q8_0 as llama.cpp does).
//   --vocab builtin: the small built-in ChatML byte-level BPE vocabulary (model_maker.hpp),
//   so no vocabulary file is needed (write ./builtin for a file of that name).
//   --late-layer-scale S --late-from L: a SYNTHETIC early-exit model for self-speculative
//   decoding benchmarks: layers >= L have their attn_output and ffn_down matrices
//   multiplied by S (e.g. 0.05), so an early exit at E >= L predicts the full model's
//   tokens most of the time (model_maker.hpp). Not a property of real models.
//   reprise-make-model llama2c --in model.bin --out OUT.gguf [--type f32|f16|q8_0|q4_0]
//   (a llama2.c model is llama; its --type takes the types listed, no mixes)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/gguf.hpp"
#include "engine/llama2c_convert.hpp"
#include "engine/model_maker.hpp"

using namespace reprise::engine;

static bool parse_type(const std::string& s, GgmlType* t, QuantMix* mix) {
    static const struct { const char* name; GgmlType type; QuantMix mix; } kTypes[] = {
        {"f32", GgmlType::F32, QuantMix::Pure},     {"f16", GgmlType::F16, QuantMix::Pure},
        {"bf16", GgmlType::BF16, QuantMix::Pure},   {"q8_0", GgmlType::Q8_0, QuantMix::Pure},
        {"q4_0", GgmlType::Q4_0, QuantMix::Pure},   {"q4_1", GgmlType::Q4_1, QuantMix::Pure},
        {"q5_0", GgmlType::Q5_0, QuantMix::Pure},   {"q5_1", GgmlType::Q5_1, QuantMix::Pure},
        {"q4_k", GgmlType::Q4_K, QuantMix::Pure},   {"q5_k", GgmlType::Q5_K, QuantMix::Pure},
        {"q6_k", GgmlType::Q6_K, QuantMix::Pure},   {"q4_k_m", GgmlType::Q4_K, QuantMix::Q4_K_M},
        {"q5_k_m", GgmlType::Q5_K, QuantMix::Q5_K_M}};
    for (const auto& k : kTypes)
        if (s == k.name) {
            *t = k.type, *mix = k.mix;
            return true;
        }
    return false;
}

static bool parse_arch(const std::string& s, ModelArch* a) {
    for (ModelArch x : {ModelArch::Llama, ModelArch::Qwen2, ModelArch::Qwen3})
        if (s == model_arch_name(x)) {
            *a = x;
            return true;
        }
    return false;
}

static int usage() {
    std::fprintf(stderr,
                 "usage: reprise-make-model random --vocab VOCAB.gguf|builtin --out OUT.gguf [--arch llama|qwen2|qwen3\n"
                 "           --dim N --hidden N --layers N --heads N --kv-heads N --head-dim N (qwen3) --ctx N\n"
                 "           --type f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|q6_k|q4_k_m|q5_k_m --rope-base X\n"
                 "           --seed N --logit-scale X --tied --name NAME --late-layer-scale X --late-from N]\n"
                 "       reprise-make-model llama2c --in MODEL.bin --out OUT.gguf [--type f32|f16|q8_0|q4_0]\n");
    return 2;
}

int main(int argc, char** argv) {
    if (argc < 2) return usage();
    const std::string mode = argv[1];
    std::string vocab, out, in;
    TinyLlamaShape s;
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        const char* v = nullptr;
        auto u32 = [&](uint32_t* dst) { if (!(v = val())) return false; *dst = uint32_t(std::strtoul(v, nullptr, 10)); return true; };
        bool ok = true;
        if (a == "--vocab") ok = (v = val()) && (vocab = v, true);
        else if (a == "--out") ok = (v = val()) && (out = v, true);
        else if (a == "--in") ok = (v = val()) && (in = v, true);
        else if (a == "--dim") ok = u32(&s.n_embd);
        else if (a == "--hidden") ok = u32(&s.n_ff);
        else if (a == "--layers") ok = u32(&s.n_layer);
        else if (a == "--heads") ok = u32(&s.n_head);
        else if (a == "--kv-heads") ok = u32(&s.n_head_kv);
        else if (a == "--ctx") ok = u32(&s.n_ctx);
        else if (a == "--seed") ok = (v = val()) && (s.seed = std::strtoull(v, nullptr, 10), true);
        else if (a == "--logit-scale") ok = (v = val()) && (s.logit_scale = std::strtof(v, nullptr), true);
        else if (a == "--tied") s.tie_output = true;
        else if (a == "--late-layer-scale") ok = (v = val()) && (s.late_layer_scale = std::strtof(v, nullptr), true);
        else if (a == "--late-from") ok = u32(&s.late_from);
        else if (a == "--name") ok = (v = val()) && (s.name = v, true);
        else if (a == "--type") ok = (v = val()) && parse_type(v, &s.type, &s.mix);
        else if (a == "--arch") ok = (v = val()) && parse_arch(v, &s.arch);
        else if (a == "--head-dim") ok = u32(&s.head_dim);
        else if (a == "--rope-base") ok = (v = val()) && (s.rope_freq_base = std::strtof(v, nullptr), s.rope_freq_base > 0.0f);
        else ok = false;
        if (!ok) return usage();
    }
    if (out.empty()) return usage();
    Status st;
    if (mode == "random") {
        if (vocab.empty()) return usage();
        std::vector<uint8_t> builtin;  // outlives vf, which views it
        if (vocab == "builtin") builtin = builtin_vocab_gguf();
        auto vf = builtin.empty() ? GgufFile::open(vocab) : GgufFile::from_memory(builtin.data(), builtin.size());
        if (!vf.ok()) { std::fprintf(stderr, "%s\n", vf.error().c_str()); return 1; }
        GgufWriter w;
        st = make_tiny_llama(s, **vf, &w);
        if (st.ok()) st = w.write_file(out);
    } else if (mode == "llama2c") {
        const bool llama2c_type = s.type == GgmlType::F32 || s.type == GgmlType::F16 || s.type == GgmlType::Q8_0 || s.type == GgmlType::Q4_0;
        if (in.empty() || s.mix != QuantMix::Pure || !llama2c_type || s.arch != ModelArch::Llama) return usage();
        st = llama2c_convert_file(in, out, s.type);
    } else {
        return usage();
    }
    if (!st.ok()) { std::fprintf(stderr, "reprise-make-model: %s\n", st.message().c_str()); return 1; }
    return 0;
}
