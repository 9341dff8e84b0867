#include "engine/llama_meta.hpp"

#include <string>

#include "engine/ggml_types.hpp"

namespace reprise::engine {

namespace {

// Errors are prefixed with the architecture's name ("llama: ", "qwen2: ", ...).
struct Keys {
    const GgufFile& f;
    std::string arch;  // the key prefix, also the error prefix
    std::string key(const char* k) const { return arch + "." + k; }
    Status err(const std::string& m) const { return Status::error(arch + ": " + m); }
    Status req_u32(const char* k, uint32_t* out) const {
        Status s = f.get_u32(key(k), out);
        return s.ok() ? s : err(s.message());
    }
    Status opt_u32(const char* k, uint32_t* out) const {
        if (!f.find(key(k))) return Status();
        Status s = f.get_u32(key(k), out);
        return s.ok() ? s : err(s.message());
    }
    Status opt_f32(const char* k, float* out) const {
        if (!f.find(key(k))) return Status();
        Status s = f.get_f32(key(k), out);
        return s.ok() ? s : err(s.message());
    }
};

std::string shape_str(const GgufTensorInfo& t) {
    std::string s = "[";
    for (uint32_t d = 0; d < t.n_dims; ++d) s += (d ? ", " : "") + std::to_string(t.ne[d]);
    return s + "]";
}

// Finds `name` and checks it is exactly [ne0] or [ne0, ne1] (ne1 == 0: 1-D).
Status get_tensor(const GgufFile& f, const std::string& arch, const std::string& name, uint64_t ne0, uint64_t ne1,
                  const GgufTensorInfo** out, bool optional = false) {
    const GgufTensorInfo* t = f.find_tensor(name);
    *out = t;
    if (!t) return optional ? Status() : Status::error(arch + ": missing tensor '" + name + "'");
    const uint32_t want_dims = ne1 ? 2 : 1;
    const bool ok = t->n_dims == want_dims && t->ne[0] == ne0 && (ne1 == 0 || t->ne[1] == ne1);
    if (!ok) {
        // Built by appending: GCC 12 warns falsely (-Wrestrict) on "lit" + std::string&&.
        std::string want = "[";
        want.append(std::to_string(ne0));
        if (ne1) want.append(", ").append(std::to_string(ne1));
        want.append("]");
        return Status::error(arch + ": tensor '" + name + "' has shape " + shape_str(*t) + ", expected " + want);
    }
    if (!ggml_type_supported(t->type))
        return Status::error(arch + ": tensor '" + name + "' has type " + std::string(ggml_type_name(t->type)) +
                             ", which the engine does not support (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
    return Status();
}

}  // namespace

const char* model_arch_name(ModelArch a) {
    switch (a) {
        case ModelArch::Llama: return "llama";
        case ModelArch::Qwen2: return "qwen2";
        case ModelArch::Qwen3: return "qwen3";
    }
    return "?";
}

Status llama_read_hparams(const GgufFile& f, LlamaHParams* hp) {
    std::string_view arch;
    if (Status s = f.get_string("general.architecture", &arch); !s.ok()) return Status::error("model: " + s.message());
    if (arch == "llama") hp->arch = ModelArch::Llama;
    else if (arch == "qwen2") hp->arch = ModelArch::Qwen2;
    else if (arch == "qwen3") hp->arch = ModelArch::Qwen3;
    else
        return Status::error("model: general.architecture '" + std::string(arch) +
                             "' is not supported (supported: llama, qwen2, qwen3)");
    const Keys k{f, std::string(arch)};
    // qwen2 and qwen3 rotate NeoX's half-split pairs (llama.cpp's LLAMA_ROPE_TYPE_NEOX).
    hp->rope_neox = hp->arch != ModelArch::Llama;
    struct { const char* key; uint32_t* v; } req[] = {
        {"context_length", &hp->n_ctx_train}, {"embedding_length", &hp->n_embd},
        {"block_count", &hp->n_layer},        {"feed_forward_length", &hp->n_ff},
        {"attention.head_count", &hp->n_head}};
    for (auto& [key, v] : req)
        if (Status s = k.req_u32(key, v); !s.ok()) return s;
    hp->n_head_kv = hp->n_head;
    if (Status s = k.opt_u32("attention.head_count_kv", &hp->n_head_kv); !s.ok()) return s;
    if (Status s = k.opt_f32("rope.freq_base", &hp->rope_freq_base); !s.ok()) return s;
    if (Status s = f.get_f32(k.key("attention.layer_norm_rms_epsilon"), &hp->rms_eps); !s.ok()) return k.err(s.message());
    // The head size: key_length when given (qwen3's need not be n_embd / n_head); the
    // engine keeps K and V heads the same size, as every supported architecture does.
    uint32_t key_len = 0, value_len = 0;
    if (Status s = k.opt_u32("attention.key_length", &key_len); !s.ok()) return s;
    if (Status s = k.opt_u32("attention.value_length", &value_len); !s.ok()) return s;

    if (hp->n_embd == 0 || hp->n_layer == 0 || hp->n_ff == 0 || hp->n_head == 0 || hp->n_head_kv == 0 || hp->n_ctx_train == 0)
        return k.err("zero-sized hyper-parameter (embedding_length, block_count, feed_forward_length, head counts and context_length must be > 0)");
    if (value_len != 0 && value_len != (key_len ? key_len : hp->n_embd / hp->n_head))
        return k.err("attention.value_length " + std::to_string(value_len) + " differs from the key length " +
                     std::to_string(key_len ? key_len : hp->n_embd / hp->n_head) + " (not supported)");
    if (key_len == 0 && hp->n_embd % hp->n_head != 0)
        return k.err("embedding_length " + std::to_string(hp->n_embd) + " is not a multiple of head_count " + std::to_string(hp->n_head));
    if (key_len > (1u << 12)) return k.err("attention.key_length " + std::to_string(key_len) + " is out of range");
    hp->n_head_dim = key_len;
    if (hp->n_head % hp->n_head_kv != 0)
        return k.err("head_count " + std::to_string(hp->n_head) + " is not a multiple of head_count_kv " + std::to_string(hp->n_head_kv));
    hp->n_rot = hp->head_dim();
    if (Status s = k.opt_u32("rope.dimension_count", &hp->n_rot); !s.ok()) return s;
    if (hp->n_rot == 0 || hp->n_rot > hp->head_dim() || hp->n_rot % 2 != 0)
        return k.err("rope.dimension_count " + std::to_string(hp->n_rot) + " must be even and within the head dimension " +
                     std::to_string(hp->head_dim()));
    if (!(hp->rms_eps > 0.0f) || !(hp->rope_freq_base > 0.0f)) return k.err("layer_norm_rms_epsilon and rope.freq_base must be > 0");
    // RoPE scaling: none, or linear (positions divided by the factor). YaRN and others
    // change attention itself and are refused rather than computed wrongly.
    if (f.find(k.key("rope.scaling.type"))) {
        std::string_view type;
        if (Status s = f.get_string(k.key("rope.scaling.type"), &type); !s.ok()) return k.err(s.message());
        if (type == "linear") {
            float factor = 1.0f;
            if (Status s = f.get_f32(k.key("rope.scaling.factor"), &factor); !s.ok()) return k.err(s.message());
            if (!(factor > 0.0f)) return k.err("rope.scaling.factor must be > 0");
            hp->rope_freq_scale = 1.0f / factor;
        } else if (type != "none") {
            return k.err("rope.scaling.type \"" + std::string(type) + "\" is not supported (none, linear, or llama3 via rope_freqs)");
        }
    }

    if (const GgufKV* toks = f.find("tokenizer.ggml.tokens"); toks && toks->type == GgufType::ARRAY) {
        if (toks->arr_n == 0 || toks->arr_n > INT32_MAX) return k.err("tokenizer.ggml.tokens has " + std::to_string(toks->arr_n) + " entries");
        hp->n_vocab = static_cast<uint32_t>(toks->arr_n);
    } else if (const GgufTensorInfo* e = f.find_tensor("token_embd.weight"); e && e->n_dims == 2 && e->ne[1] > 0 && e->ne[1] <= INT32_MAX) {
        hp->n_vocab = static_cast<uint32_t>(e->ne[1]);
    } else {
        return k.err("no vocabulary size: neither tokenizer.ggml.tokens nor a 2-D token_embd.weight");
    }
    return Status();
}

Status llama_find_tensors(const GgufFile& f, const LlamaHParams& hp, LlamaTensors* t) {
    const std::string arch = model_arch_name(hp.arch);
    const uint64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff, KV = hp.n_embd_kv(), EQ = hp.n_embd_q(), HD = hp.head_dim();
    if (Status s = get_tensor(f, arch, "token_embd.weight", E, V, &t->tok_embd); !s.ok()) return s;
    if (Status s = get_tensor(f, arch, "output_norm.weight", E, 0, &t->output_norm); !s.ok()) return s;
    if (Status s = get_tensor(f, arch, "output.weight", E, V, &t->output, /*optional=*/true); !s.ok()) return s;
    t->tied_output = t->output == nullptr;  // no output.weight: the LM head is token_embd
    if (t->tied_output) t->output = t->tok_embd;
    // llama.cpp takes an optional output.bias for qwen2; the engine has no place for it,
    // so such a file is refused rather than run without it.
    if (f.find_tensor("output.bias")) return Status::error(arch + ": tensor 'output.bias' is not supported");
    t->rope_freqs = f.find_tensor("rope_freqs.weight");
    if (t->rope_freqs && (t->rope_freqs->n_dims != 1 || t->rope_freqs->ne[0] != hp.n_rot / 2 || t->rope_freqs->type != uint32_t(GgmlType::F32)))
        return Status::error(arch + ": rope_freqs.weight must be F32 with n_rot/2 = " + std::to_string(hp.n_rot / 2) + " elements");
    // Q/K/V biases are qwen2's, required (as llama.cpp); Q/K norms qwen3's, required.
    // Either in another architecture's file is refused, never ignored: llama.cpp reads
    // optional biases of llama files (with attn_output's too), which the engine does not
    // compute, so such a file would run wrong.
    const bool biases = hp.arch == ModelArch::Qwen2, qk_norm = hp.arch == ModelArch::Qwen3;
    t->layers.clear();
    for (uint32_t i = 0; i < hp.n_layer; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        LlamaLayerTensors L;
        struct { const char* name; uint64_t ne0, ne1; const GgufTensorInfo** out; } want[] = {
            {"attn_norm.weight", E, 0, &L.attn_norm}, {"attn_q.weight", E, EQ, &L.wq},
            {"attn_k.weight", E, KV, &L.wk},          {"attn_v.weight", E, KV, &L.wv},
            {"attn_output.weight", EQ, E, &L.wo},     {"ffn_norm.weight", E, 0, &L.ffn_norm},
            {"ffn_gate.weight", E, F, &L.ffn_gate},   {"ffn_up.weight", E, F, &L.ffn_up},
            {"ffn_down.weight", F, E, &L.ffn_down}};
        for (auto& w : want)
            if (Status s = get_tensor(f, arch, p + w.name, w.ne0, w.ne1, w.out); !s.ok()) return s;
        const GgufTensorInfo* never = nullptr;  // attn_output.bias: no architecture here has one
        struct { const char* name; uint64_t ne0; const GgufTensorInfo** out; bool wanted; } extra[] = {
            {"attn_q.bias", EQ, &L.bq, biases},          {"attn_k.bias", KV, &L.bk, biases},
            {"attn_v.bias", KV, &L.bv, biases},          {"attn_output.bias", E, &never, false},
            {"attn_q_norm.weight", HD, &L.q_norm, qk_norm}, {"attn_k_norm.weight", HD, &L.k_norm, qk_norm}};
        for (auto& x : extra) {
            if (x.wanted) {
                if (Status s = get_tensor(f, arch, p + x.name, x.ne0, 0, x.out); !s.ok()) return s;
            } else if (f.find_tensor(p + x.name)) {
                return Status::error(arch + ": tensor '" + p + x.name + "' is not supported in a " + arch + " model");
            }
        }
        t->layers.push_back(L);
    }
    return Status();
}

}  // namespace reprise::engine
