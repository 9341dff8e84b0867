#include "engine/llama2c_convert.hpp"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/model_maker.hpp"

namespace reprise::engine {

namespace {
// Total float count of the weights the config describes (excluding the header).
bool weight_floats(const Llama2cConfig& c, uint64_t* out) {
    const uint64_t D = uint64_t(c.dim), H = uint64_t(c.hidden_dim), L = uint64_t(c.n_layers), V = uint64_t(c.vocab_size);
    const uint64_t hs = D / uint64_t(c.n_heads), KV = hs * uint64_t(c.n_kv_heads), S = uint64_t(c.seq_len);
    // Every factor is < 2^31, so the products below fit in 64 bits except in absurd
    // headers, which the per-term bounds exclude.
    uint64_t n = V * D;
    n += L * (D + D * D + 2 * KV * D + D * D + D + 3 * H * D);
    n += D + S * hs;  // rms_final + freq_cis_real + freq_cis_imag (hs/2 each)
    if (!c.shared_classifier) n += V * D;
    *out = n;
    return true;
}
}  // namespace

Status llama2c_read_config(const uint8_t* data, size_t size, Llama2cConfig* c) {
    if (size < 28) return Status::error("llama2.c: file too short for the 28-byte header");
    int32_t h[7];
    std::memcpy(h, data, sizeof h);
    c->dim = h[0]; c->hidden_dim = h[1]; c->n_layers = h[2]; c->n_heads = h[3]; c->n_kv_heads = h[4];
    c->shared_classifier = h[5] > 0;
    c->vocab_size = h[5] < 0 ? -h[5] : h[5];
    c->seq_len = h[6];
    // Bounds keep every size computation far from overflow (and reject garbage early).
    auto in = [](int32_t v, int32_t hi) { return v > 0 && v <= hi; };
    if (!in(c->dim, 1 << 16) || !in(c->hidden_dim, 1 << 18) || !in(c->n_layers, 1024) || !in(c->n_heads, 1024) ||
        !in(c->n_kv_heads, 1024) || !in(c->vocab_size, 1 << 24) || !in(c->seq_len, 1 << 20) || h[5] == INT32_MIN)
        return Status::error("llama2.c: header values out of range");
    if (c->dim % c->n_heads != 0 || c->n_heads % c->n_kv_heads != 0 || (c->dim / c->n_heads) % 2 != 0)
        return Status::error("llama2.c: dim must be a multiple of n_heads (even head size), n_heads of n_kv_heads");
    uint64_t nf = 0;
    weight_floats(*c, &nf);
    if (uint64_t(size) != 28 + nf * 4)
        return Status::error("llama2.c: file has " + std::to_string(size) + " bytes, the header implies " + std::to_string(28 + nf * 4));
    return Status();
}

Status llama2c_to_gguf(const uint8_t* data, size_t size, GgmlType type, GgufWriter* w) {
    Llama2cConfig c;
    if (Status s = llama2c_read_config(data, size, &c); !s.ok()) return s;
    if ((type == GgmlType::Q8_0 || type == GgmlType::Q4_0) && (c.dim % 32 || c.hidden_dim % 32))
        return Status::error("llama2.c: Q8_0/Q4_0 need dim and hidden_dim to be multiples of 32");
    const uint64_t D = uint64_t(c.dim), H = uint64_t(c.hidden_dim), L = uint64_t(c.n_layers), V = uint64_t(c.vocab_size);
    const uint64_t hs = D / uint64_t(c.n_heads), KV = hs * uint64_t(c.n_kv_heads);
    // Copy the floats out (the buffer need not be 4-byte aligned).
    std::vector<float> f((size - 28) / 4);
    std::memcpy(f.data(), data + 28, f.size() * 4);
    const float* p = f.data();
    auto take = [&](uint64_t n) { const float* r = p; p += n; return r; };
    const float* tok = take(V * D);
    const float* rms_att = take(L * D);
    const float* wq = take(L * D * D);
    const float* wk = take(L * KV * D);
    const float* wv = take(L * KV * D);
    const float* wo = take(L * D * D);
    const float* rms_ffn = take(L * D);
    const float* w1 = take(L * H * D);
    const float* w2 = take(L * D * H);
    const float* w3 = take(L * H * D);
    const float* rms_final = take(D);
    take(uint64_t(c.seq_len) * hs);  // freq_cis_real, freq_cis_imag
    const float* wcls = c.shared_classifier ? nullptr : take(V * D);

    const uint32_t ftype = type == GgmlType::F32 ? 0 : type == GgmlType::F16 ? 1 : type == GgmlType::Q4_0 ? 2 : 7;
    set_llama_hparams(w, "llama2.c", uint32_t(c.seq_len), uint32_t(D), uint32_t(H), uint32_t(L), uint32_t(c.n_heads),
                      uint32_t(c.n_kv_heads), 10000.0f, 1e-5f, ftype);

    // Synthetic vocabulary (see the header).
    std::vector<std::string> tokens(V);
    std::vector<float> scores(V, 0.0f);
    std::vector<int32_t> types(V, int32_t(1));
    for (uint64_t i = 0; i < V; ++i) {
        char b[32];
        if (i == 0) { tokens[i] = "<unk>"; types[i] = 2; }
        else if (i == 1) { tokens[i] = "<s>"; types[i] = 3; }
        else if (i == 2) { tokens[i] = "</s>"; types[i] = 3; }
        else if (i < 259) { std::snprintf(b, sizeof b, "<0x%02X>", unsigned(i - 3)); tokens[i] = b; types[i] = 6; }
        else { std::snprintf(b, sizeof b, "<tok_%llu>", (unsigned long long)i); tokens[i] = b; }
    }
    w->set_string("tokenizer.ggml.model", "llama");
    w->set_array_strings("tokenizer.ggml.tokens", tokens);
    if (Status s = w->set_array("tokenizer.ggml.scores", GgufType::FLOAT32, scores.data(), V); !s.ok()) return s;
    if (Status s = w->set_array("tokenizer.ggml.token_type", GgufType::INT32, types.data(), V); !s.ok()) return s;
    if (V > 2) {
        w->set_u32("tokenizer.ggml.unknown_token_id", 0);
        w->set_u32("tokenizer.ggml.bos_token_id", 1);
        w->set_u32("tokenizer.ggml.eos_token_id", 2);
    }

    auto vec = [&](const std::string& name, const float* x, uint64_t n) {
        return w->add_tensor(name, uint32_t(GgmlType::F32), {n}, x, n * 4);
    };
    if (Status s = add_matrix(w, "token_embd.weight", type, tok, V, D); !s.ok()) return s;
    for (uint64_t l = 0; l < L; ++l) {
        const std::string pre = "blk." + std::to_string(l) + ".";
        Status s;
        if (!(s = vec(pre + "attn_norm.weight", rms_att + l * D, D)).ok() ||
            !(s = add_matrix(w, pre + "attn_q.weight", type, wq + l * D * D, D, D)).ok() ||
            !(s = add_matrix(w, pre + "attn_k.weight", type, wk + l * KV * D, KV, D)).ok() ||
            !(s = add_matrix(w, pre + "attn_v.weight", type, wv + l * KV * D, KV, D)).ok() ||
            !(s = add_matrix(w, pre + "attn_output.weight", type, wo + l * D * D, D, D)).ok() ||
            !(s = vec(pre + "ffn_norm.weight", rms_ffn + l * D, D)).ok() ||
            !(s = add_matrix(w, pre + "ffn_gate.weight", type, w1 + l * H * D, H, D)).ok() ||
            !(s = add_matrix(w, pre + "ffn_down.weight", type, w2 + l * D * H, D, H)).ok() ||
            !(s = add_matrix(w, pre + "ffn_up.weight", type, w3 + l * H * D, H, D)).ok())
            return s;
    }
    if (Status s = vec("output_norm.weight", rms_final, D); !s.ok()) return s;
    if (wcls)
        if (Status s = add_matrix(w, "output.weight", type, wcls, V, D); !s.ok()) return s;
    return Status();
}

Status llama2c_convert_file(const std::string& in_path, const std::string& out_path, GgmlType type) {
    std::ifstream in(in_path, std::ios::binary);
    if (!in) return Status::error("llama2.c: cannot open " + in_path);
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string buf = ss.str();
    GgufWriter w;
    if (Status s = llama2c_to_gguf(reinterpret_cast<const uint8_t*>(buf.data()), buf.size(), type, &w); !s.ok()) return s;
    return w.write_file(out_path);
}

}  // namespace reprise::engine
