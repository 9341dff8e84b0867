#include "engine/model.hpp"

#include <algorithm>
#include <cstring>

#include "engine/kernels/attention.hpp"
#include "engine/kernels/matmul_f32.hpp"
#include "engine/kernels/matmul_quant.hpp"
#include "engine/kernels/qgemm_x16.hpp"
#include "engine/kernels/rmsnorm.hpp"
#include "engine/kernels/rope.hpp"
#include "engine/kernels/swiglu.hpp"

namespace reprise::engine {

// One matmul input X [n][cols] and its quantized forms, each made on first use and then
// shared by every matrix that reads X in that format: wq, wk and wv read one input, gate
// and up another, and quantizing it once per format rather than once per matrix saves
// work that is serial with the matmuls. Bind a new input (`bind`) whenever X changes.
struct MatmulInput {
    const float* x = nullptr;
    int n = 0, cols = 0;
    std::vector<uint8_t> q[4];  // by ActType, grown and reused across calls
    bool ready[4] = {};
    void bind(const float* x_, int n_, int cols_) {
        x = x_, n = n_, cols = cols_;
        for (bool& r : ready) r = false;
    }
    const void* quantized(ActType t, ThreadPool* pool) {
        const int i = int(t);
        if (!ready[i]) {
            const size_t bytes = size_t(n) * act_row_bytes(t, cols);
            if (q[i].size() < bytes) q[i].resize(bytes);
            quantize_activations(t, x, n, cols, q[i].data(), pool);
            ready[i] = true;
        }
        return q[i].data();
    }
};

namespace {

// Tokens per thread below which the per-token steps of a layer (norms, RoPE, residual
// adds, SwiGLU) stay on the calling thread: a hand-off costs more than a few tokens.
constexpr int64_t kSerialGrain = 8;

void add_row(float* x, const float* o, int n) {
    for (int i = 0; i < n; ++i) x[i] += o[i];
}

struct ForwardScratch {
    std::vector<float> xb, q, k, v, att, o, g, u;
    MatmulInput in;
    // EQ: Q's width (n_embd_q), which is also the attention output's (wo's input).
    void fit(size_t T, size_t E, size_t EQ, size_t EKV, size_t F) {
        auto grow = [](std::vector<float>& b, size_t n) {
            if (b.size() < n) b.resize(n);
        };
        grow(xb, T * E), grow(q, T * EQ), grow(k, T * EKV), grow(v, T * EKV), grow(att, T * EQ), grow(o, T * E);
        grow(g, T * F), grow(u, T * F);
    }
};

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
    const bool keep = cpu_matmul_supports(type) && (want == GgmlType::F32 || want == type);
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

// Q8_0/Q4_0 matrices for the CPU kernels: rows interleaved 16 at a time, once.
void pack_x16(Weight& w) {
    if (!x16_supports(w.type) || w.x16 || w.data.empty()) return;
    std::vector<uint8_t> packed(x16_bytes(w.type, w.rows, w.cols));
    x16_pack(w.type, w.data.data(), w.rows, w.cols, packed.data());
    w.data = std::move(packed);
    w.x16 = true;
}

void pack_all_x16(Weight& tok_embd, Weight& output, std::vector<Model::Layer>& layers) {
    pack_x16(tok_embd), pack_x16(output);
    for (auto& l : layers)
        for (Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down}) pack_x16(*w);
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
        // Biases (qwen2) and per-head Q/K norms (qwen3): empty when the file has none.
        struct { const GgufTensorInfo* ti; std::vector<float>* v; } extra[] = {
            {L.bq, &l.bq}, {L.bk, &l.bk}, {L.bv, &l.bv}, {L.q_norm, &l.q_norm}, {L.k_norm, &l.k_norm}};
        for (auto& x : extra)
            if (x.ti)
                if (Status s = vec(x.ti, x.v); !s.ok()) return s;
        struct { const GgufTensorInfo* ti; Weight* w; } ws[] = {{L.wq, &l.wq}, {L.wk, &l.wk}, {L.wv, &l.wv}, {L.wo, &l.wo},
                                                                {L.ffn_gate, &l.gate}, {L.ffn_up, &l.up}, {L.ffn_down, &l.down}};
        for (auto& x : ws)
            if (Status s = load_weight(*x.ti, opt.quantize, x.w); !s.ok()) return s;
        m->layers_.push_back(std::move(l));
    }
    m->pool_ = std::make_unique<ThreadPool>(std::max(1, opt.n_threads));
    // The device backends read plain rows: repack only for a model that stays on the CPU.
    if (opt.device == Device::Cpu) {
        pack_all_x16(m->tok_embd_, m->output_, m->layers_);
        return m;
    }
    auto on_device = cuda_model_open(*m);
    if (!on_device.ok()) {
        if (opt.device == Device::Cuda) return Status::error("model: device cuda: " + on_device.error());
        m->device_note_ = on_device.error();
        pack_all_x16(m->tok_embd_, m->output_, m->layers_);
        return m;
    }
    m->device_model_ = std::move(on_device.value());
    // The device holds the matrices now; the host copies would only take memory
    // (an 8B model's are 8.5 GB in Q8_0). Norm vectors are small and stay.
    auto drop = [](Weight& w) { std::vector<uint8_t>().swap(w.data); };
    drop(m->tok_embd_), drop(m->output_);
    for (auto& l : m->layers_)
        for (Weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down}) drop(*w);
    return m;
}

size_t Model::n_params() const {
    auto n = [](const Weight& w) { return size_t(w.rows) * w.cols; };
    size_t s = n(tok_embd_) + (tied_ ? 0 : n(output_)) + output_norm_.size();
    for (const auto& l : layers_)
        s += l.attn_norm.size() + l.ffn_norm.size() + l.bq.size() + l.bk.size() + l.bv.size() + l.q_norm.size() +
             l.k_norm.size() + n(l.wq) + n(l.wk) + n(l.wv) + n(l.wo) + n(l.gate) + n(l.up) + n(l.down);
    return s;
}

// The KV memory for n_blocks blocks: null (the pool's host default) on the CPU, device
// memory on a GPU; `ok` is false when the device has too little.
std::unique_ptr<KvStorage> Model::kv_storage(int block_size, int n_blocks, bool* ok) const {
    *ok = true;
    if (!device_model_) return nullptr;
    auto storage = device_model_->new_kv_storage(size_t(n_blocks) * KvBlockPool::block_floats(n_layer(), int(hp_.n_embd_kv()), block_size));
    *ok = storage != nullptr;
    return storage;
}

std::unique_ptr<KvCache> Model::new_kv_cache(int n_ctx) const {
    if (n_ctx <= 0) n_ctx = int(hp_.n_ctx_train);
    constexpr int kBlock = 16;
    bool ok = false;
    auto storage = kv_storage(kBlock, (n_ctx + kBlock - 1) / kBlock, &ok);
    if (!ok) return nullptr;
    return std::make_unique<KvCache>(int(hp_.n_layer), n_ctx, int(hp_.n_embd_kv()), kBlock, std::move(storage));
}

std::unique_ptr<KvBlockPool> Model::new_kv_pool(int block_size, int n_blocks) const {
    bool ok = false;
    auto storage = kv_storage(block_size, n_blocks, &ok);
    if (!ok) return nullptr;
    return std::make_unique<KvBlockPool>(int(hp_.n_layer), int(hp_.n_embd_kv()), block_size, n_blocks, std::move(storage));
}

void Model::matmul(const Weight& w, MatmulInput& in, float* Y) const {
    const ActType at = act_type_for(w.type);
    if (w.x16)
        return x16_matmul(w.type, w.data.data(), w.rows, w.cols, static_cast<const BlockQ8_0*>(in.quantized(at, pool_.get())), in.n,
                          Y, pool_.get());
    if (at == ActType::F32) return matmul_f32(reinterpret_cast<const float*>(w.data.data()), w.rows, w.cols, in.x, in.n, Y, pool_.get());
    matmul_quantized(w.type, w.data.data(), w.rows, w.cols, in.quantized(at, pool_.get()), in.n, Y, pool_.get());
}

Status Model::forward(KvCache& kv, const int32_t* tokens, int n, int pos0, float* logits, bool all_logits) const {
    if (n > 0 && (pos0 < 0 || int64_t(pos0) + n > kv.n_ctx()))
        return Status::error("forward: positions " + std::to_string(pos0) + ".." + std::to_string(pos0 + n - 1) +
                             " exceed the KV cache (" + std::to_string(kv.n_ctx()) + ")");
    BatchItem item;
    item.kv = &kv.sequence();
    item.tokens = tokens;
    item.n = n;
    item.pos0 = pos0;
    item.n_logits = all_logits ? n : 1;
    item.logits = logits;
    if (Status s = forward_batch(&item, 1); !s.ok()) return s;
    kv.sequence().set_size(pos0 + n);
    return Status();
}

Status Model::forward_batch(BatchItem* items, int n_items, int layer_end) const {
    const int L = n_layer();
    if (layer_end <= 0 || layer_end > L) layer_end = L;
    const int V = n_vocab();
    if (n_items <= 0) return Status::error("forward: no sequences");
    int blocks_needed = 0;
    for (int i = 0; i < n_items; ++i) {
        const BatchItem& it = items[i];
        if (it.n <= 0 || !it.kv) return Status::error("forward: no tokens");
        // One pool per pass, in the memory this model computes in.
        if (it.kv->pool() != items[0].kv->pool() || it.kv->pool()->on_host() != !device_model_)
            return Status::error("forward: every sequence must be in one KV pool of this model's device");
        if (it.pos0 < 0) return Status::error("forward: negative position");
        if (it.layer_begin < 0 || it.layer_begin > layer_end || (it.layer_begin > 0 && !it.hidden))
            return Status::error("forward: a pass from layer " + std::to_string(it.layer_begin) + " needs its hidden state");
        if (it.n_logits < 0 || it.n_logits > it.n || (it.n_logits > 0 && !it.logits))
            return Status::error("forward: bad logits request");
        if (!it.hidden)
            for (int t = 0; t < it.n; ++t)
                if (it.tokens[t] < 0 || it.tokens[t] >= V)
                    return Status::error("forward: token id " + std::to_string(it.tokens[t]) + " out of range");
        blocks_needed += it.kv->blocks_needed(it.pos0, it.n);
    }
    if (blocks_needed > 0 && blocks_needed > items[0].kv->pool()->free_blocks())
        return Status::error("forward: the KV cache is full (" + std::to_string(blocks_needed) + " blocks needed, " +
                             std::to_string(items[0].kv->pool()->free_blocks()) + " free)");
    for (int i = 0; i < n_items; ++i)
        if (!items[i].kv->prepare(items[i].pos0, items[i].n)) return Status::error("forward: the KV cache is full");
    if (device_model_) return device_model_->forward(items, n_items, layer_end);
    return forward_cpu(items, n_items, layer_end);
}

void Model::matmuls(std::initializer_list<std::pair<const Weight*, float*>> ws, MatmulInput& in) const {
    const Weight& w0 = *ws.begin()->first;
    bool together = w0.x16 && ws.size() <= 4;
    for (const auto& [w, y] : ws) together = together && w->x16 && w->type == w0.type && w->cols == w0.cols;
    if (!together) {
        for (const auto& [w, y] : ws) matmul(*w, in, y);
        return;
    }
    X16Product ps[4];
    int n = 0;
    for (const auto& [w, y] : ws) ps[n++] = X16Product{w->data.data(), w->rows, y};
    x16_matmul_many(w0.type, ps, n, w0.cols, static_cast<const BlockQ8_0*>(in.quantized(act_type_for(w0.type), pool_.get())), in.n,
                    pool_.get());
}

void Model::embed_row(int token, float* out) const {
    const Weight& w = tok_embd_;
    if (!w.x16) {
        dequantize_row(uint32_t(w.type), w.data.data() + size_t(token) * w.row_bytes, out, w.cols);
        return;
    }
    thread_local std::vector<uint8_t> row;
    row.resize(w.row_bytes);
    x16_unpack_row(w.type, w.data.data(), w.cols, token, row.data());
    dequantize_row(uint32_t(w.type), row.data(), out, w.cols);
}

Status Model::forward_cpu(BatchItem* items, int n_items, int layer_end) const {
    const int E = int(hp_.n_embd), F = int(hp_.n_ff), H = int(hp_.n_head), HKV = int(hp_.n_head_kv);
    const int HD = int(hp_.head_dim()), EQ = int(hp_.n_embd_q()), EKV = int(hp_.n_embd_kv()), V = n_vocab();
    int T = 0, M = 0;
    for (int i = 0; i < n_items; ++i) T += items[i].n, M += items[i].n_logits;

    // Tokens in order of layer_begin, so the tokens a layer runs on are a prefix.
    std::vector<int> order(size_t(n_items), 0);
    for (int i = 0; i < n_items; ++i) order[size_t(i)] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return items[a].layer_begin < items[b].layer_begin; });
    struct Tok { KvSequence* kv; int pos; };
    std::vector<Tok> toks(size_t(T), Tok{nullptr, 0});
    std::vector<int> first_tok(size_t(n_items), 0);  // row of item i's token 0
    std::vector<float> x(size_t(T) * E);
    int max_pos = 0;
    for (int r = 0, oi = 0; oi < n_items; ++oi) {
        const BatchItem& it = items[order[size_t(oi)]];
        first_tok[size_t(order[size_t(oi)])] = r;
        for (int t = 0; t < it.n; ++t, ++r) {
            toks[size_t(r)] = {it.kv, it.pos0 + t};
            float* row = &x[size_t(r) * E];
            if (it.hidden) std::memcpy(row, it.hidden + size_t(t) * E, sizeof(float) * E);
            else embed_row(it.tokens[t], row);
        }
        max_pos = std::max(max_pos, it.pos0 + it.n);
    }

    // Activations live in per-thread buffers that only grow: a decode step is small
    // and frequent, and fresh vectors each step cost page faults on every call.
    thread_local ForwardScratch buf;
    buf.fit(size_t(T), size_t(E), size_t(EQ), size_t(EKV), size_t(F));
    float *xb = buf.xb.data(), *q = buf.q.data(), *k = buf.k.data(), *v = buf.v.data(), *att = buf.att.data(),
          *o = buf.o.data(), *g = buf.g.data(), *u = buf.u.data();
    MatmulInput& in = buf.in;
    // The per-token work between the matmuls, over the pool for prefill-sized batches
    // (each token computed alone, as at decode: batch invariant).
    auto per_token = [&](int n_tok, auto&& fn) {
        parallel_for(pool_.get(), n_tok, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) fn(t);
        }, kSerialGrain);
    };
    const float* ff = rope_freqs_.empty() ? nullptr : rope_freqs_.data();
    const KvBlockPool& pool = *items[0].kv->pool();
    for (int l = 0, active = 0, next = 0; l < layer_end; ++l) {
        // Items whose pass starts at or before this layer join (the order makes them a prefix).
        while (next < n_items && items[order[size_t(next)]].layer_begin <= l) active += items[order[size_t(next++)]].n;
        const int n = active;
        if (n == 0) continue;
        const Layer& Ly = layers_[size_t(l)];
        per_token(n, [&](int64_t t) { rmsnorm_f32(&xb[size_t(t) * E], &x[size_t(t) * E], Ly.attn_norm.data(), E, hp_.rms_eps); });
        in.bind(xb, n, E);
        matmuls({{&Ly.wq, q}, {&Ly.wk, k}, {&Ly.wv, v}}, in);
        auto rope = hp_.rope_neox ? rope_neox_f32 : rope_f32;
        per_token(n, [&](int64_t t) {  // each token writes its own cache rows
            const Tok& tk = toks[size_t(t)];
            float *qt = &q[size_t(t) * EQ], *kt = &k[size_t(t) * EKV], *vt = &v[size_t(t) * EKV];
            // qwen2: Q/K/V biases, before RoPE.
            if (!Ly.bq.empty()) for (int i = 0; i < EQ; ++i) qt[i] += Ly.bq[size_t(i)];
            if (!Ly.bk.empty()) for (int i = 0; i < EKV; ++i) kt[i] += Ly.bk[size_t(i)];
            if (!Ly.bv.empty()) for (int i = 0; i < EKV; ++i) vt[i] += Ly.bv[size_t(i)];
            if (!Ly.q_norm.empty()) {  // qwen3: RMSNorm of each Q and K head, before RoPE
                for (int h = 0; h < H; ++h) rmsnorm_f32(qt + h * HD, qt + h * HD, Ly.q_norm.data(), HD, hp_.rms_eps);
                for (int h = 0; h < HKV; ++h) rmsnorm_f32(kt + h * HD, kt + h * HD, Ly.k_norm.data(), HD, hp_.rms_eps);
            }
            rope(qt, H, HD, int(hp_.n_rot), tk.pos, hp_.rope_freq_base, hp_.rope_freq_scale, ff);
            rope(kt, HKV, HD, int(hp_.n_rot), tk.pos, hp_.rope_freq_base, hp_.rope_freq_scale, ff);
            std::memcpy(tk.kv->k_row(l, tk.pos), &k[size_t(t) * EKV], sizeof(float) * EKV);
            std::memcpy(tk.kv->v_row(l, tk.pos), &v[size_t(t) * EKV], sizeof(float) * EKV);
        });
        // Token t attends to its own sequence's positions 0..pos (causal); tokens are
        // independent here, and every row they read was written above or before.
        // Causal: a token's cost grows with its position, so the threads' contiguous
        // chunks walk the tokens in the order first, last, second, second last, ...
        parallel_for(pool_.get(), n, [&](int64_t i0, int64_t i1) {
            std::vector<float> scratch(static_cast<size_t>(max_pos));
            for (int64_t i = i0; i < i1; ++i) {
                const int64_t t = i % 2 == 0 ? i / 2 : n - 1 - i / 2;
                const Tok& tk = toks[size_t(t)];
                const KvView view{pool.data(), tk.kv->blocks().data(), pool.block_size(), pool.block_stride(),
                                  pool.k_offset(l), pool.v_offset(l), size_t(EKV)};
                attention_f32(&q[size_t(t) * EQ], view, tk.pos + 1, H, HKV, HD, &att[size_t(t) * EQ], scratch.data());
            }
        });
        in.bind(att, n, EQ);
        matmul(Ly.wo, in, o);
        per_token(n, [&](int64_t t) { add_row(&x[size_t(t) * E], &o[size_t(t) * E], E); });

        per_token(n, [&](int64_t t) { rmsnorm_f32(&xb[size_t(t) * E], &x[size_t(t) * E], Ly.ffn_norm.data(), E, hp_.rms_eps); });
        in.bind(xb, n, E);
        matmuls({{&Ly.gate, g}, {&Ly.up, u}}, in);
        per_token(n, [&](int64_t t) { swiglu_f32(&g[size_t(t) * F], &g[size_t(t) * F], &u[size_t(t) * F], F); });
        in.bind(g, n, F);
        matmul(Ly.down, in, o);
        per_token(n, [&](int64_t t) { add_row(&x[size_t(t) * E], &o[size_t(t) * E], E); });
    }

    for (int i = 0; i < n_items; ++i)
        if (items[i].hidden_out)
            std::memcpy(items[i].hidden_out, &x[size_t(first_tok[size_t(i)]) * E], sizeof(float) * size_t(items[i].n) * E);
    if (M == 0) return Status();
    // The head over the rows that want logits, gathered so it is one product.
    std::vector<float> rows(size_t(M) * E);
    for (int i = 0, m = 0; i < n_items; ++i)
        for (int t = items[i].n - items[i].n_logits; t < items[i].n; ++t, ++m)
            rmsnorm_f32(&rows[size_t(m) * E], &x[size_t(first_tok[size_t(i)] + t) * E], output_norm_.data(), E, hp_.rms_eps);
    const Weight& head = tied_ ? tok_embd_ : output_;
    in.bind(rows.data(), M, E);
    if (n_items == 1) {
        matmul(head, in, items[0].logits);
        return Status();
    }
    std::vector<float> out(size_t(M) * V);
    matmul(head, in, out.data());
    for (int i = 0, m = 0; i < n_items; ++i) {
        if (items[i].n_logits == 0) continue;
        std::memcpy(items[i].logits, &out[size_t(m) * V], sizeof(float) * size_t(items[i].n_logits) * V);
        m += items[i].n_logits;
    }
    return Status();
}

}  // namespace reprise::engine
