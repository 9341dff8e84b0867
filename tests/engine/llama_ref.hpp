#pragma once
// A naive Llama forward pass for tests: a direct transcription of llama2.c's run.c
// (token by token, plain loops, double accumulators in the dot products), independent
// of the engine's kernels. Weights come either straight from a llama2.c checkpoint or
// from a GGUF file (dequantized to float), so the engine is checked both against the
// original format and against its own loader.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/ggml_types.hpp"
#include "engine/gguf.hpp"

namespace engine_test {

struct RefModel {
    int dim = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab = 0, seq_len = 0;
    float eps = 1e-5f, freq_base = 10000.0f;
    std::vector<float> tok, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;  // llama2.c layouts
    // state
    std::vector<float> key_cache, value_cache;

    int head_size() const { return dim / n_heads; }
    int kv_dim() const { return head_size() * n_kv_heads; }
    const float* cls() const { return wcls.empty() ? tok.data() : wcls.data(); }

    void reset() {
        key_cache.assign(size_t(n_layers) * seq_len * kv_dim(), 0.0f);
        value_cache.assign(key_cache.size(), 0.0f);
    }

    static void rmsnorm(float* o, const float* x, const float* w, int n, float eps) {
        double ss = 0;
        for (int j = 0; j < n; ++j) ss += double(x[j]) * x[j];
        const float s = float(1.0 / std::sqrt(ss / n + eps));
        for (int j = 0; j < n; ++j) o[j] = w[j] * (s * x[j]);
    }
    static void matmul(float* xout, const float* x, const float* w, int n, int d) {
        for (int i = 0; i < d; ++i) {
            double v = 0;
            for (int j = 0; j < n; ++j) v += double(w[size_t(i) * n + j]) * x[j];
            xout[i] = float(v);
        }
    }

    // Logits of `token` at `pos` (run.c's forward()).
    std::vector<float> forward(int token, int pos) {
        const int hs = head_size(), kvd = kv_dim(), kv_mul = n_heads / n_kv_heads;
        std::vector<float> x(tok.begin() + size_t(token) * dim, tok.begin() + size_t(token + 1) * dim);
        std::vector<float> xb(dim), xb2(dim), q(dim), hb(hidden), hb2(hidden), att(size_t(pos + 1));
        for (int l = 0; l < n_layers; ++l) {
            rmsnorm(xb.data(), x.data(), &rms_att[size_t(l) * dim], dim, eps);
            const size_t loff = size_t(l) * seq_len * kvd;
            float* k = &key_cache[loff + size_t(pos) * kvd];
            float* v = &value_cache[loff + size_t(pos) * kvd];
            matmul(q.data(), xb.data(), &wq[size_t(l) * dim * dim], dim, dim);
            matmul(k, xb.data(), &wk[size_t(l) * dim * kvd], dim, kvd);
            matmul(v, xb.data(), &wv[size_t(l) * dim * kvd], dim, kvd);
            for (int i = 0; i < dim; i += 2) {  // RoPE: adjacent pairs, as run.c
                const int head_dim = i % hs;
                const float freq = 1.0f / std::pow(freq_base, head_dim / float(hs));
                const float val = pos * freq, fcr = std::cos(val), fci = std::sin(val);
                const int rotn = i < kvd ? 2 : 1;
                for (int vv = 0; vv < rotn; ++vv) {
                    float* vec = vv == 0 ? q.data() : k;
                    const float v0 = vec[i], v1 = vec[i + 1];
                    vec[i] = v0 * fcr - v1 * fci;
                    vec[i + 1] = v0 * fci + v1 * fcr;
                }
            }
            for (int h = 0; h < n_heads; ++h) {
                const float* qh = &q[size_t(h) * hs];
                for (int t = 0; t <= pos; ++t) {
                    const float* kt = &key_cache[loff + size_t(t) * kvd + size_t(h / kv_mul) * hs];
                    double score = 0;
                    for (int i = 0; i < hs; ++i) score += double(qh[i]) * kt[i];
                    att[size_t(t)] = float(score / std::sqrt(double(hs)));
                }
                float mx = att[0];
                for (int t = 1; t <= pos; ++t) mx = std::max(mx, att[size_t(t)]);
                double sum = 0;
                for (int t = 0; t <= pos; ++t) sum += att[size_t(t)] = std::exp(att[size_t(t)] - mx);
                for (int t = 0; t <= pos; ++t) att[size_t(t)] = float(att[size_t(t)] / sum);
                float* xh = &xb[size_t(h) * hs];
                for (int i = 0; i < hs; ++i) {
                    double acc = 0;
                    for (int t = 0; t <= pos; ++t) acc += double(att[size_t(t)]) * value_cache[loff + size_t(t) * kvd + size_t(h / kv_mul) * hs + i];
                    xh[i] = float(acc);
                }
            }
            matmul(xb2.data(), xb.data(), &wo[size_t(l) * dim * dim], dim, dim);
            for (int i = 0; i < dim; ++i) x[i] += xb2[i];
            rmsnorm(xb.data(), x.data(), &rms_ffn[size_t(l) * dim], dim, eps);
            matmul(hb.data(), xb.data(), &w1[size_t(l) * dim * hidden], dim, hidden);
            matmul(hb2.data(), xb.data(), &w3[size_t(l) * dim * hidden], dim, hidden);
            for (int i = 0; i < hidden; ++i) hb[i] = hb[i] * (1.0f / (1.0f + std::exp(-hb[i]))) * hb2[i];
            matmul(xb.data(), hb.data(), &w2[size_t(l) * dim * hidden], hidden, dim);
            for (int i = 0; i < dim; ++i) x[i] += xb[i];
        }
        rmsnorm(x.data(), x.data(), rms_final.data(), dim, eps);
        std::vector<float> logits(vocab);
        matmul(logits.data(), x.data(), cls(), dim, vocab);
        return logits;
    }

    // From a llama2.c checkpoint (the whole file in memory).
    static bool from_llama2c(const std::string& buf, RefModel* m) {
        if (buf.size() < 28) return false;
        int32_t h[7];
        std::memcpy(h, buf.data(), 28);
        m->dim = h[0]; m->hidden = h[1]; m->n_layers = h[2]; m->n_heads = h[3]; m->n_kv_heads = h[4];
        const bool shared = h[5] > 0;
        m->vocab = std::abs(h[5]); m->seq_len = h[6];
        const size_t D = m->dim, H = m->hidden, L = m->n_layers, KV = m->kv_dim(), V = m->vocab;
        size_t off = 28;
        auto take = [&](std::vector<float>& v, size_t n) {
            v.resize(n);
            std::memcpy(v.data(), buf.data() + off, n * 4);
            off += n * 4;
        };
        take(m->tok, V * D); take(m->rms_att, L * D); take(m->wq, L * D * D); take(m->wk, L * KV * D);
        take(m->wv, L * KV * D); take(m->wo, L * D * D); take(m->rms_ffn, L * D); take(m->w1, L * H * D);
        take(m->w2, L * D * H); take(m->w3, L * H * D); take(m->rms_final, D);
        off += size_t(m->seq_len) * m->head_size() * 4;  // freq_cis_real + imag
        if (!shared) take(m->wcls, V * D);
        m->reset();
        return off == buf.size();
    }

    // From a GGUF llama file (tensors dequantized to float).
    static bool from_gguf(const reprise::engine::GgufFile& f, RefModel* m) {
        using namespace reprise::engine;
        auto u32 = [&](const char* k) { uint32_t v = 0; f.get_u32(k, &v); return int(v); };
        m->dim = u32("llama.embedding_length"); m->hidden = u32("llama.feed_forward_length");
        m->n_layers = u32("llama.block_count"); m->n_heads = u32("llama.attention.head_count");
        m->n_kv_heads = u32("llama.attention.head_count_kv"); m->seq_len = u32("llama.context_length");
        f.get_f32("llama.attention.layer_norm_rms_epsilon", &m->eps);
        f.get_f32("llama.rope.freq_base", &m->freq_base);
        auto load = [&](const std::string& name, std::vector<float>& out) {
            const GgufTensorInfo* t = f.find_tensor(name);
            if (!t) return false;
            const size_t old = out.size();
            out.resize(old + t->n_elements);
            uint64_t rb = 0;
            ggml_row_size(t->type, t->ne[0], &rb);
            for (uint64_t r = 0; r < t->n_elements / t->ne[0]; ++r)
                if (!dequantize_row(t->type, t->data + r * rb, out.data() + old + r * t->ne[0], int64_t(t->ne[0]))) return false;
            return true;
        };
        if (!load("token_embd.weight", m->tok)) return false;
        m->vocab = int(m->tok.size() / size_t(m->dim));
        for (int l = 0; l < m->n_layers; ++l) {
            const std::string p = "blk." + std::to_string(l) + ".";
            if (!load(p + "attn_norm.weight", m->rms_att) || !load(p + "attn_q.weight", m->wq) || !load(p + "attn_k.weight", m->wk) ||
                !load(p + "attn_v.weight", m->wv) || !load(p + "attn_output.weight", m->wo) || !load(p + "ffn_norm.weight", m->rms_ffn) ||
                !load(p + "ffn_gate.weight", m->w1) || !load(p + "ffn_down.weight", m->w2) || !load(p + "ffn_up.weight", m->w3))
                return false;
        }
        if (!load("output_norm.weight", m->rms_final)) return false;
        if (f.find_tensor("output.weight") && !load("output.weight", m->wcls)) return false;
        m->reset();
        return true;
    }
};

// max |a - b| / max |b|: the logit error relative to the logit scale.
inline double rel_max_err(const float* a, const float* b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; ++i) {
        num = std::max(num, double(std::fabs(a[i] - b[i])));
        den = std::max(den, double(std::fabs(b[i])));
    }
    return den > 0 ? num / den : num;
}

}  // namespace engine_test
