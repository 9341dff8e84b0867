#pragma once
// A naive forward pass of the qwen2 and qwen3 architectures for tests, beside
// llama_ref.hpp's run.c transcription and independent of the engine's kernels and
// loader: token by token, plain loops, double accumulators, weights dequantized from
// the GGUF by name. Written from llama.cpp's graphs (src/models/qwen2.cpp, qwen3.cpp):
//   qwen2: q = Wq x + bq, k = Wk x + bk, v = Wv x + bv, then RoPE;
//   qwen3: q = Wq x, k = Wk x, each head RMSNorm'ed (eps of the model) and scaled by
//          attn_q_norm / attn_k_norm, then RoPE; the head size is attention.key_length,
//          so Q is n_head * head_dim wide and Wo maps it back to n_embd;
//   both: NeoX RoPE, pair (i, i + n_rot/2) rotated by pos * base^(-2i / n_rot),
//          attention scaled by 1/sqrt(head_dim), SwiGLU FFN, RMSNorm, tied or separate
//          output.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ggml_types.hpp"
#include "engine/gguf.hpp"

namespace engine_test {

struct QwenRef {
    std::string arch;  // "qwen2" or "qwen3"
    int dim = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, n_rot = 0, vocab = 0, seq_len = 0;
    float eps = 1e-6f, freq_base = 1e6f;
    struct Layer {
        std::vector<float> attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm, ffn_norm, gate, up, down;
    };
    std::vector<Layer> layers;
    std::vector<float> tok, out_norm, out;  // out empty: tied to tok
    std::vector<float> k_cache, v_cache;    // [layer][pos][n_kv_heads * head_dim]

    int q_dim() const { return n_heads * head_dim; }
    int kv_dim() const { return n_kv_heads * head_dim; }

    static void rmsnorm(float* o, const float* x, const float* w, int n, float eps) {
        double ss = 0;
        for (int j = 0; j < n; ++j) ss += double(x[j]) * x[j];
        const double s = 1.0 / std::sqrt(ss / n + eps);
        for (int j = 0; j < n; ++j) o[j] = float(w[j] * (s * x[j]));
    }
    // out[i] = sum_j w[i][j] x[j] (+ b[i]); w is [rows][cols] row-major.
    static void matvec(float* out, const std::vector<float>& w, const float* x, int rows, int cols, const std::vector<float>& b = {}) {
        for (int i = 0; i < rows; ++i) {
            double acc = b.empty() ? 0.0 : b[size_t(i)];
            for (int j = 0; j < cols; ++j) acc += double(w[size_t(i) * cols + j]) * x[j];
            out[i] = float(acc);
        }
    }
    void rope_neox(float* head, int pos) const {
        const int half = n_rot / 2;
        for (int i = 0; i < half; ++i) {
            const double theta = pos * std::pow(double(freq_base), -2.0 * i / n_rot);
            const double c = std::cos(theta), s = std::sin(theta), a = head[i], b = head[i + half];
            head[i] = float(a * c - b * s);
            head[i + half] = float(a * s + b * c);
        }
    }

    void reset() {
        k_cache.assign(size_t(n_layers) * seq_len * kv_dim(), 0.0f);
        v_cache.assign(k_cache.size(), 0.0f);
    }

    std::vector<float> forward(int token, int pos) {
        const int QD = q_dim(), KVD = kv_dim(), group = n_heads / n_kv_heads;
        std::vector<float> x(tok.begin() + size_t(token) * dim, tok.begin() + size_t(token + 1) * dim);
        std::vector<float> xb(dim), q(QD), att(QD), o(dim), g(hidden), u(hidden), scores(size_t(pos) + 1);
        for (int l = 0; l < n_layers; ++l) {
            const Layer& L = layers[size_t(l)];
            rmsnorm(xb.data(), x.data(), L.attn_norm.data(), dim, eps);
            float* k = &k_cache[(size_t(l) * seq_len + pos) * KVD];
            float* v = &v_cache[(size_t(l) * seq_len + pos) * KVD];
            matvec(q.data(), L.wq, xb.data(), QD, dim, L.bq);
            matvec(k, L.wk, xb.data(), KVD, dim, L.bk);
            matvec(v, L.wv, xb.data(), KVD, dim, L.bv);
            for (int h = 0; h < n_heads; ++h) {
                if (!L.q_norm.empty()) rmsnorm(&q[size_t(h) * head_dim], &q[size_t(h) * head_dim], L.q_norm.data(), head_dim, eps);
                rope_neox(&q[size_t(h) * head_dim], pos);
            }
            for (int h = 0; h < n_kv_heads; ++h) {
                if (!L.k_norm.empty()) rmsnorm(k + h * head_dim, k + h * head_dim, L.k_norm.data(), head_dim, eps);
                rope_neox(k + h * head_dim, pos);
            }
            for (int h = 0; h < n_heads; ++h) {
                const int kh = h / group;
                double mx = -1e300;
                for (int t = 0; t <= pos; ++t) {
                    const float* kt = &k_cache[(size_t(l) * seq_len + t) * KVD + size_t(kh) * head_dim];
                    double s = 0;
                    for (int i = 0; i < head_dim; ++i) s += double(q[size_t(h) * head_dim + i]) * kt[i];
                    scores[size_t(t)] = float(s / std::sqrt(double(head_dim)));
                    mx = std::max(mx, double(scores[size_t(t)]));
                }
                double sum = 0;
                for (int t = 0; t <= pos; ++t) sum += std::exp(scores[size_t(t)] - mx);
                for (int i = 0; i < head_dim; ++i) {
                    double acc = 0;
                    for (int t = 0; t <= pos; ++t)
                        acc += std::exp(scores[size_t(t)] - mx) / sum * v_cache[(size_t(l) * seq_len + t) * KVD + size_t(kh) * head_dim + i];
                    att[size_t(h) * head_dim + i] = float(acc);
                }
            }
            matvec(o.data(), L.wo, att.data(), dim, QD);
            for (int i = 0; i < dim; ++i) x[size_t(i)] += o[size_t(i)];
            rmsnorm(xb.data(), x.data(), L.ffn_norm.data(), dim, eps);
            matvec(g.data(), L.gate, xb.data(), hidden, dim);
            matvec(u.data(), L.up, xb.data(), hidden, dim);
            for (int i = 0; i < hidden; ++i) g[size_t(i)] = float(g[size_t(i)] / (1.0 + std::exp(-double(g[size_t(i)]))) * u[size_t(i)]);
            matvec(o.data(), L.down, g.data(), dim, hidden);
            for (int i = 0; i < dim; ++i) x[size_t(i)] += o[size_t(i)];
        }
        rmsnorm(x.data(), x.data(), out_norm.data(), dim, eps);
        std::vector<float> logits(static_cast<size_t>(vocab));
        matvec(logits.data(), out.empty() ? tok : out, x.data(), vocab, dim);
        return logits;
    }

    // From a qwen2 / qwen3 GGUF (tensors dequantized to float). False if anything the
    // architecture needs is missing.
    static bool from_gguf(const reprise::engine::GgufFile& f, QwenRef* m) {
        using namespace reprise::engine;
        std::string_view a;
        if (!f.get_string("general.architecture", &a).ok() || (a != "qwen2" && a != "qwen3")) return false;
        m->arch = std::string(a);
        auto u32 = [&](const char* k, int dflt) {
            uint32_t v = 0;
            return f.get_u32(m->arch + "." + k, &v).ok() ? int(v) : dflt;
        };
        m->dim = u32("embedding_length", 0), m->hidden = u32("feed_forward_length", 0), m->n_layers = u32("block_count", 0);
        m->n_heads = u32("attention.head_count", 0), m->n_kv_heads = u32("attention.head_count_kv", m->n_heads);
        m->seq_len = u32("context_length", 0);
        if (m->dim == 0 || m->n_heads == 0) return false;
        m->head_dim = u32("attention.key_length", m->dim / m->n_heads);
        m->n_rot = u32("rope.dimension_count", m->head_dim);
        if (!f.get_f32(m->arch + ".attention.layer_norm_rms_epsilon", &m->eps).ok()) return false;
        f.get_f32(m->arch + ".rope.freq_base", &m->freq_base);
        auto load = [&](const std::string& name, std::vector<float>& out) {
            const GgufTensorInfo* t = f.find_tensor(name);
            if (!t) return false;
            out.resize(t->n_elements);
            uint64_t rb = 0;
            ggml_row_size(t->type, t->ne[0], &rb);
            for (uint64_t r = 0; r < t->n_elements / t->ne[0]; ++r)
                if (!dequantize_row(t->type, t->data + r * rb, out.data() + r * t->ne[0], int64_t(t->ne[0]))) return false;
            return true;
        };
        if (!load("token_embd.weight", m->tok) || !load("output_norm.weight", m->out_norm)) return false;
        m->vocab = int(m->tok.size() / size_t(m->dim));
        if (f.find_tensor("output.weight") && !load("output.weight", m->out)) return false;
        const bool qwen2 = m->arch == "qwen2";
        m->layers.assign(size_t(m->n_layers), {});
        for (int l = 0; l < m->n_layers; ++l) {
            const std::string p = "blk." + std::to_string(l) + ".";
            Layer& L = m->layers[size_t(l)];
            if (!load(p + "attn_norm.weight", L.attn_norm) || !load(p + "attn_q.weight", L.wq) || !load(p + "attn_k.weight", L.wk) ||
                !load(p + "attn_v.weight", L.wv) || !load(p + "attn_output.weight", L.wo) || !load(p + "ffn_norm.weight", L.ffn_norm) ||
                !load(p + "ffn_gate.weight", L.gate) || !load(p + "ffn_up.weight", L.up) || !load(p + "ffn_down.weight", L.down))
                return false;
            if (qwen2 && (!load(p + "attn_q.bias", L.bq) || !load(p + "attn_k.bias", L.bk) || !load(p + "attn_v.bias", L.bv))) return false;
            if (!qwen2 && (!load(p + "attn_q_norm.weight", L.q_norm) || !load(p + "attn_k_norm.weight", L.k_norm))) return false;
        }
        m->reset();
        return true;
    }
};

}  // namespace engine_test
