#include "engine/llama_meta.hpp"

#include <string>

#include "engine/ggml_types.hpp"

namespace reprise::engine {

namespace {

Status opt_u32(const GgufFile& f, const char* key, uint32_t* out) {
    return f.find(key) ? f.get_u32(key, out) : Status();
}
Status opt_f32(const GgufFile& f, const char* key, float* out) {
    return f.find(key) ? f.get_f32(key, out) : Status();
}

std::string shape_str(const GgufTensorInfo& t) {
    std::string s = "[";
    for (uint32_t d = 0; d < t.n_dims; ++d) s += (d ? ", " : "") + std::to_string(t.ne[d]);
    return s + "]";
}

// Finds `name` and checks it is exactly [ne0] or [ne0, ne1] (ne1 == 0: 1-D).
Status get_tensor(const GgufFile& f, const std::string& name, uint64_t ne0, uint64_t ne1, const GgufTensorInfo** out,
                  bool optional = false) {
    const GgufTensorInfo* t = f.find_tensor(name);
    *out = t;
    if (!t) return optional ? Status() : Status::error("llama: missing tensor '" + name + "'");
    const uint32_t want_dims = ne1 ? 2 : 1;
    const bool ok = t->n_dims == want_dims && t->ne[0] == ne0 && (ne1 == 0 || t->ne[1] == ne1);
    if (!ok) {
        // Built by appending: GCC 12 warns falsely (-Wrestrict) on "lit" + std::string&&.
        std::string want = "[";
        want.append(std::to_string(ne0));
        if (ne1) want.append(", ").append(std::to_string(ne1));
        want.append("]");
        return Status::error("llama: tensor '" + name + "' has shape " + shape_str(*t) + ", expected " + want);
    }
    if (!ggml_type_supported(t->type))
        return Status::error("llama: tensor '" + name + "' has type " + std::string(ggml_type_name(t->type)) +
                             ", which the engine does not support (F32, F16, BF16, Q8_0, Q4_0, Q4_K)");
    return Status();
}

}  // namespace

Status llama_read_hparams(const GgufFile& f, LlamaHParams* hp) {
    std::string_view arch;
    if (Status s = f.get_string("general.architecture", &arch); !s.ok()) return Status::error("llama: " + s.message());
    if (arch != "llama") return Status::error("llama: general.architecture is '" + std::string(arch) + "', not 'llama'");
    struct { const char* key; uint32_t* v; } req[] = {
        {"llama.context_length", &hp->n_ctx_train}, {"llama.embedding_length", &hp->n_embd},
        {"llama.block_count", &hp->n_layer},        {"llama.feed_forward_length", &hp->n_ff},
        {"llama.attention.head_count", &hp->n_head}};
    for (auto& [key, v] : req)
        if (Status s = f.get_u32(key, v); !s.ok()) return Status::error("llama: " + s.message());
    hp->n_head_kv = hp->n_head;
    if (Status s = opt_u32(f, "llama.attention.head_count_kv", &hp->n_head_kv); !s.ok()) return Status::error("llama: " + s.message());
    if (Status s = opt_f32(f, "llama.rope.freq_base", &hp->rope_freq_base); !s.ok()) return Status::error("llama: " + s.message());
    if (Status s = f.get_f32("llama.attention.layer_norm_rms_epsilon", &hp->rms_eps); !s.ok())
        return Status::error("llama: " + s.message());

    auto bad = [](const std::string& m) { return Status::error("llama: " + m); };
    if (hp->n_embd == 0 || hp->n_layer == 0 || hp->n_ff == 0 || hp->n_head == 0 || hp->n_head_kv == 0 || hp->n_ctx_train == 0)
        return bad("zero-sized hyper-parameter (embedding_length, block_count, feed_forward_length, head counts and context_length must be > 0)");
    if (hp->n_embd % hp->n_head != 0)
        return bad("embedding_length " + std::to_string(hp->n_embd) + " is not a multiple of head_count " + std::to_string(hp->n_head));
    if (hp->n_head % hp->n_head_kv != 0)
        return bad("head_count " + std::to_string(hp->n_head) + " is not a multiple of head_count_kv " + std::to_string(hp->n_head_kv));
    hp->n_rot = hp->head_dim();
    if (Status s = opt_u32(f, "llama.rope.dimension_count", &hp->n_rot); !s.ok()) return Status::error("llama: " + s.message());
    if (hp->n_rot == 0 || hp->n_rot > hp->head_dim() || hp->n_rot % 2 != 0)
        return bad("rope.dimension_count " + std::to_string(hp->n_rot) + " must be even and within the head dimension " +
                   std::to_string(hp->head_dim()));
    if (!(hp->rms_eps > 0.0f) || !(hp->rope_freq_base > 0.0f)) return bad("layer_norm_rms_epsilon and rope.freq_base must be > 0");
    // RoPE scaling: none, or linear (positions divided by the factor). YaRN and others
    // change attention itself and are refused rather than computed wrongly.
    if (f.find("llama.rope.scaling.type")) {
        std::string_view type;
        if (Status s = f.get_string("llama.rope.scaling.type", &type); !s.ok()) return Status::error("llama: " + s.message());
        if (type == "linear") {
            float factor = 1.0f;
            if (Status s = f.get_f32("llama.rope.scaling.factor", &factor); !s.ok()) return Status::error("llama: " + s.message());
            if (!(factor > 0.0f)) return bad("rope.scaling.factor must be > 0");
            hp->rope_freq_scale = 1.0f / factor;
        } else if (type != "none") {
            return bad("rope.scaling.type \"" + std::string(type) + "\" is not supported (none, linear, or llama3 via rope_freqs)");
        }
    }

    if (const GgufKV* toks = f.find("tokenizer.ggml.tokens"); toks && toks->type == GgufType::ARRAY) {
        if (toks->arr_n == 0 || toks->arr_n > INT32_MAX) return bad("tokenizer.ggml.tokens has " + std::to_string(toks->arr_n) + " entries");
        hp->n_vocab = static_cast<uint32_t>(toks->arr_n);
    } else if (const GgufTensorInfo* e = f.find_tensor("token_embd.weight"); e && e->n_dims == 2 && e->ne[1] > 0 && e->ne[1] <= INT32_MAX) {
        hp->n_vocab = static_cast<uint32_t>(e->ne[1]);
    } else {
        return bad("no vocabulary size: neither tokenizer.ggml.tokens nor a 2-D token_embd.weight");
    }
    return Status();
}

Status llama_find_tensors(const GgufFile& f, const LlamaHParams& hp, LlamaTensors* t) {
    const uint64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff, KV = hp.n_embd_kv();
    if (Status s = get_tensor(f, "token_embd.weight", E, V, &t->tok_embd); !s.ok()) return s;
    if (Status s = get_tensor(f, "output_norm.weight", E, 0, &t->output_norm); !s.ok()) return s;
    if (Status s = get_tensor(f, "output.weight", E, V, &t->output, /*optional=*/true); !s.ok()) return s;
    t->tied_output = t->output == nullptr;  // no output.weight: the LM head is token_embd
    if (t->tied_output) t->output = t->tok_embd;
    t->rope_freqs = f.find_tensor("rope_freqs.weight");
    if (t->rope_freqs && (t->rope_freqs->n_dims != 1 || t->rope_freqs->ne[0] != hp.n_rot / 2 || t->rope_freqs->type != uint32_t(GgmlType::F32)))
        return Status::error("llama: rope_freqs.weight must be F32 with n_rot/2 = " + std::to_string(hp.n_rot / 2) + " elements");
    t->layers.clear();
    for (uint32_t i = 0; i < hp.n_layer; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        LlamaLayerTensors L;
        struct { const char* name; uint64_t ne0, ne1; const GgufTensorInfo** out; } want[] = {
            {"attn_norm.weight", E, 0, &L.attn_norm}, {"attn_q.weight", E, E, &L.wq},
            {"attn_k.weight", E, KV, &L.wk},          {"attn_v.weight", E, KV, &L.wv},
            {"attn_output.weight", E, E, &L.wo},      {"ffn_norm.weight", E, 0, &L.ffn_norm},
            {"ffn_gate.weight", E, F, &L.ffn_gate},   {"ffn_up.weight", E, F, &L.ffn_up},
            {"ffn_down.weight", F, E, &L.ffn_down}};
        for (auto& w : want)
            if (Status s = get_tensor(f, p + w.name, w.ne0, w.ne1, w.out); !s.ok()) return s;
        t->layers.push_back(L);
    }
    return Status();
}

}  // namespace reprise::engine
