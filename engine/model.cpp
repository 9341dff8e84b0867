#include "engine/model.hpp"

#include <algorithm>
#include <cstring>

#include "engine/kernels/attention.hpp"
#include "engine/kernels/matmul_f32.hpp"
#include "engine/kernels/matmul_q4_0.hpp"
#include "engine/kernels/matmul_q8_0.hpp"
#include "engine/kernels/rmsnorm.hpp"
#include "engine/kernels/rope.hpp"
#include "engine/kernels/swiglu.hpp"

namespace reprise::engine {

KvCache::KvCache(int n_layer, int n_ctx, int n_embd_kv)
    : n_layer_(n_layer), n_ctx_(n_ctx), n_embd_kv_(n_embd_kv),
      k_(size_t(n_layer) * n_ctx * n_embd_kv), v_(size_t(n_layer) * n_ctx * n_embd_kv) {}

namespace {

Status tensor_to_f32(const GgufTensorInfo& t, std::vector<float>* out) {
    out->resize(t.n_elements);
    const uint64_t row = t.ne[0];
    uint64_t row_bytes = 0;
    if (!ggml_row_size(t.type, row, &row_bytes)) return Status::error("model: bad row size for '" + std::string(t.name) + "'");
    const uint64_t n_rows = t.n_elements / row;
    for (uint64_t r = 0; r < n_rows; ++r)
        if (!dequantize_row(t.type, t.data + r * row_bytes, out->data() + r * row, int64_t(row)))
            return Status::error("model: cannot dequantize '" + std::string(t.name) + "' (" + std::string(ggml_type_name(t.type)) + ")");
    return Status();
}

// Loads a 2-D tensor as a Weight: Q8_0/Q4_0 kept (unless a different quantization is
// requested), everything else as F32, then quantized to `want` if asked.
Status load_weight(const GgufTensorInfo& t, GgmlType want, Weight* w) {
    w->cols = int(t.ne[0]);
    w->rows = int(t.ne[1]);
    const auto type = GgmlType(t.type);
    const bool keep = (type == GgmlType::Q8_0 || type == GgmlType::Q4_0 || type == GgmlType::F32) &&
                      (want == GgmlType::F32 || want == type);
    if (keep) {
        w->type = type;
        w->data.assign(t.data, t.data + t.n_bytes);
        w->row_bytes = t.n_bytes / w->rows;
        return Status();
    }
    std::vector<float> f;
    if (Status s = tensor_to_f32(t, &f); !s.ok()) return s;
    if (want != GgmlType::F32 && w->cols % kQK8_0 != 0) want = GgmlType::F32;  // cannot block-quantize: keep F32
    w->type = want;
    uint64_t rb = 0;
    ggml_row_size(uint32_t(want), uint64_t(w->cols), &rb);
    w->row_bytes = rb;
    w->data.resize(rb * w->rows);
    for (int r = 0; r < w->rows; ++r) {
        const float* src = f.data() + size_t(r) * w->cols;
        uint8_t* dst = w->data.data() + size_t(r) * rb;
        if (want == GgmlType::F32) std::memcpy(dst, src, rb);
        else if (want == GgmlType::Q8_0) quantize_row_q8_0_ref(src, reinterpret_cast<BlockQ8_0*>(dst), w->cols);
        else quantize_row_q4_0_ref(src, reinterpret_cast<BlockQ4_0*>(dst), w->cols);
    }
    return Status();
}

}  // namespace

Result<std::unique_ptr<Model>> Model::load(const std::string& path, const ModelOptions& opt) {
    auto f = GgufFile::open(path);
    if (!f.ok()) return f.status();
    return from_gguf(**f, opt);
}

Result<std::unique_ptr<Model>> Model::from_gguf(const GgufFile& f, const ModelOptions& opt) {
    if (opt.quantize != GgmlType::F32 && opt.quantize != GgmlType::Q8_0 && opt.quantize != GgmlType::Q4_0)
        return Status::error("model: load-time quantization supports only Q8_0 and Q4_0");
    std::unique_ptr<Model> m(new Model());
    if (Status s = llama_read_hparams(f, &m->hp_); !s.ok()) return s;
    LlamaTensors t;
    if (Status s = llama_find_tensors(f, m->hp_, &t); !s.ok()) return s;
    // Sizes are used as int below; a Llama this engine runs is far below these limits.
    if (m->hp_.n_vocab > (1u << 24) || m->hp_.n_embd > (1u << 16) || m->hp_.n_ff > (1u << 18) || m->hp_.n_ctx_train == 0)
        return Status::error("model: hyper-parameters out of the supported range");
    auto vec = [](const GgufTensorInfo* ti, std::vector<float>* out) { return tensor_to_f32(*ti, out); };
    // The embedding table is read one row at a time (never multiplied), so it is kept
    // as stored unless quantization was asked for; it must be a type whose rows dequantize.
    if (Status s = load_weight(*t.tok_embd, opt.quantize, &m->tok_embd_); !s.ok()) return s;
    m->tied_ = t.tied_output;
    if (!m->tied_)
        if (Status s = load_weight(*t.output, opt.quantize, &m->output_); !s.ok()) return s;
    if (Status s = vec(t.output_norm, &m->output_norm_); !s.ok()) return s;
    if (t.rope_freqs)
        if (Status s = vec(t.rope_freqs, &m->rope_freqs_); !s.ok()) return s;
    for (const auto& L : t.layers) {
        Layer l;
        if (Status s = vec(L.attn_norm, &l.attn_norm); !s.ok()) return s;
        if (Status s = vec(L.ffn_norm, &l.ffn_norm); !s.ok()) return s;
        struct { const GgufTensorInfo* ti; Weight* w; } ws[] = {{L.wq, &l.wq}, {L.wk, &l.wk}, {L.wv, &l.wv}, {L.wo, &l.wo},
                                                                {L.ffn_gate, &l.gate}, {L.ffn_up, &l.up}, {L.ffn_down, &l.down}};
        for (auto& x : ws)
            if (Status s = load_weight(*x.ti, opt.quantize, x.w); !s.ok()) return s;
        m->layers_.push_back(std::move(l));
    }
    m->pool_ = std::make_unique<ThreadPool>(std::max(1, opt.n_threads));
    return m;
}

size_t Model::n_params() const {
    auto n = [](const Weight& w) { return size_t(w.rows) * w.cols; };
    size_t s = n(tok_embd_) + (tied_ ? 0 : n(output_)) + output_norm_.size();
    for (const auto& l : layers_)
        s += l.attn_norm.size() + l.ffn_norm.size() + n(l.wq) + n(l.wk) + n(l.wv) + n(l.wo) + n(l.gate) + n(l.up) + n(l.down);
    return s;
}

std::unique_ptr<KvCache> Model::new_kv_cache(int n_ctx) const {
    if (n_ctx <= 0) n_ctx = int(hp_.n_ctx_train);
    return std::make_unique<KvCache>(int(hp_.n_layer), n_ctx, int(hp_.n_embd_kv()));
}

void Model::matmul(const Weight& w, const float* X, int n, float* Y, std::vector<BlockQ8_0>& q8) const {
    switch (w.type) {
        case GgmlType::Q8_0:
        case GgmlType::Q4_0:
            q8.resize(size_t(n) * (w.cols / kQK8_0));
            // Per token, over the pool: in a prefill this is ~8% of the work, and on
            // the calling thread alone it kept two threads from scaling.
            parallel_for(pool_.get(), n, [&](int64_t t0, int64_t t1) {
                const size_t nb = size_t(w.cols / kQK8_0);
                quantize_activations_q8_0(X + size_t(t0) * w.cols, int(t1 - t0), w.cols, q8.data() + size_t(t0) * nb);
            });
            if (w.type == GgmlType::Q8_0)
                matmul_q8_0(reinterpret_cast<const BlockQ8_0*>(w.data.data()), w.rows, w.cols, q8.data(), n, Y, pool_.get());
            else
                matmul_q4_0(reinterpret_cast<const BlockQ4_0*>(w.data.data()), w.rows, w.cols, q8.data(), n, Y, pool_.get());
            return;
        default:
            matmul_f32(reinterpret_cast<const float*>(w.data.data()), w.rows, w.cols, X, n, Y, pool_.get());
    }
}

Status Model::forward(KvCache& kv, const int32_t* tokens, int n, int pos0, float* logits, bool all_logits) const {
    if (n <= 0) return Status::error("forward: no tokens");
    if (pos0 < 0 || int64_t(pos0) + n > kv.n_ctx())
        return Status::error("forward: positions " + std::to_string(pos0) + ".." + std::to_string(pos0 + n - 1) +
                             " exceed the KV cache (" + std::to_string(kv.n_ctx()) + ")");
    for (int i = 0; i < n; ++i)
        if (tokens[i] < 0 || tokens[i] >= n_vocab()) return Status::error("forward: token id " + std::to_string(tokens[i]) + " out of range");
    const int E = int(hp_.n_embd), F = int(hp_.n_ff), H = int(hp_.n_head), HKV = int(hp_.n_head_kv);
    const int HD = int(hp_.head_dim()), EKV = int(hp_.n_embd_kv()), V = n_vocab();
    std::vector<float> x(size_t(n) * E), xb(size_t(n) * E), q(size_t(n) * E), k(size_t(n) * EKV), v(size_t(n) * EKV),
        att(size_t(n) * E), o(size_t(n) * E), g(size_t(n) * F), u(size_t(n) * F);
    std::vector<BlockQ8_0> q8;

    for (int t = 0; t < n; ++t)
        dequantize_row(uint32_t(tok_embd_.type), tok_embd_.data.data() + size_t(tokens[t]) * tok_embd_.row_bytes, x.data() + size_t(t) * E, E);

    for (size_t l = 0; l < layers_.size(); ++l) {
        const Layer& L = layers_[l];
        for (int t = 0; t < n; ++t) rmsnorm_f32(&xb[size_t(t) * E], &x[size_t(t) * E], L.attn_norm.data(), E, hp_.rms_eps);
        matmul(L.wq, xb.data(), n, q.data(), q8);
        matmul(L.wk, xb.data(), n, k.data(), q8);
        matmul(L.wv, xb.data(), n, v.data(), q8);
        for (int t = 0; t < n; ++t) {
            const float* ff = rope_freqs_.empty() ? nullptr : rope_freqs_.data();
            rope_f32(&q[size_t(t) * E], H, HD, int(hp_.n_rot), pos0 + t, hp_.rope_freq_base, hp_.rope_freq_scale, ff);
            rope_f32(&k[size_t(t) * EKV], HKV, HD, int(hp_.n_rot), pos0 + t, hp_.rope_freq_base, hp_.rope_freq_scale, ff);
            std::memcpy(kv.k_row(int(l), pos0 + t), &k[size_t(t) * EKV], sizeof(float) * EKV);
            std::memcpy(kv.v_row(int(l), pos0 + t), &v[size_t(t) * EKV], sizeof(float) * EKV);
        }
        const KvCache::View view = kv.view(int(l));
        const KvView kvv{view.k, view.v, view.stride};
        // Token t attends to positions 0..pos0+t (causal); tokens are independent here.
        parallel_for(pool_.get(), n, [&](int64_t t0, int64_t t1) {
            std::vector<float> scratch(size_t(pos0 + n));
            for (int64_t t = t0; t < t1; ++t)
                attention_f32(&q[size_t(t) * E], kvv, pos0 + int(t) + 1, H, HKV, HD, &att[size_t(t) * E], scratch.data());
        });
        matmul(L.wo, att.data(), n, o.data(), q8);
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];

        for (int t = 0; t < n; ++t) rmsnorm_f32(&xb[size_t(t) * E], &x[size_t(t) * E], L.ffn_norm.data(), E, hp_.rms_eps);
        matmul(L.gate, xb.data(), n, g.data(), q8);
        matmul(L.up, xb.data(), n, u.data(), q8);
        swiglu_f32(g.data(), g.data(), u.data(), n * F);
        matmul(L.down, g.data(), n, o.data(), q8);
        for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    }
    const int first = all_logits ? 0 : n - 1;
    const int m = n - first;
    for (int t = first; t < n; ++t) rmsnorm_f32(&xb[size_t(t) * E], &x[size_t(t) * E], output_norm_.data(), E, hp_.rms_eps);
    matmul(tied_ ? tok_embd_ : output_, &xb[size_t(first) * E], m, logits, q8);
    (void)V;
    return Status();
}

}  // namespace reprise::engine
