// The CUDA half of a Model (device_model.hpp): the weights on the device, scratch
// buffers, the RoPE table, and the forward pass as a sequence of the kernels in
// kernels/ on one stream. It mirrors Model::forward_cpu step for step (same token
// order, same layer prefixes for early-exit verification, the same activation format
// per weight type: Q8_0, Q8_1 or Q8_K, each quantized once per input and shared by the
// matrices that read it), so the CPU path is its reference end to end. Architectures:
// llama, and qwen2 / qwen3 (Q/K/V biases, per-head Q/K RMSNorm, NeoX RoPE, a Q width
// n_head * head_dim that need not be n_embd).
//
// Per pass the host uploads one small metadata buffer (token ids, positions, block
// tables) and copies back only the logits and requested hidden states. Decode-sized
// passes (every item starting from tokens, at most kGraphMaxTokens tokens) are
// captured once per shape as a CUDA graph and replayed: a Llama-3.2-1B step is ~200
// kernel launches, whose launch cost alone would rival the step's memory time. Every
// buffer a graph touches stays at a fixed address until the capacity grows, which
// drops the graphs. REPRISE_CUDA_GRAPHS=0 in the environment turns graphs off.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "engine/cuda/device.hpp"
#include "engine/cuda/kernels.hpp"
#include "engine/cuda/repack.hpp"
#include "engine/kernels/rope.hpp"
#include "engine/model.hpp"

namespace reprise::engine {
namespace {

using cuda::ActFormat;
using cuda::check;
using cuda::DevWeight;
using cuda::WeightType;

constexpr int kGraphMaxTokens = 64;
constexpr size_t kMaxGraphs = 256;

class CudaModel final : public DeviceModel {
public:
    static Result<std::unique_ptr<DeviceModel>> open(const Model& m);
    ~CudaModel() override;

    const DeviceInfo& info() const override { return info_; }
    std::unique_ptr<KvStorage> new_kv_storage(size_t n_floats) override;
    Status forward(BatchItem* items, int n_items, int layer_end) override;

private:
    struct Layer {
        const float *attn_norm = nullptr, *ffn_norm = nullptr;
        const float *bq = nullptr, *bk = nullptr, *bv = nullptr;  // qwen2; null otherwise
        const float *q_norm = nullptr, *k_norm = nullptr;         // qwen3; null otherwise
        DevWeight wq, wk, wv, wo, gate, up, down;
    };
    // Device scratch, sized for `tokens` tokens; regrown (and graphs dropped) on demand.
    struct Scratch {
        int tokens = 0;
        size_t meta_ints = 0;
        float *x = nullptr, *xb = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr, *o = nullptr;
        float *g = nullptr, *u = nullptr, *rows = nullptr, *logits = nullptr;
        cuda::DevQ8 xq;  // Q8_0 / Q8_1 (32-blocks; s written only for Q8_1)
        cuda::DevQ8 xk;  // Q8_K
        int32_t* meta = nullptr;        // device: ids, pos, table_of, logit rows, tables
        int32_t* meta_host = nullptr;   // pinned staging of the same
        float* logits_host = nullptr;   // pinned
    };
    // What a captured pass depends on besides buffer contents.
    using GraphKey = std::tuple<int, int, int, const float*, int, size_t>;  // T, M, layer_end, pool, block size, tables

    CudaModel() = default;
    void* device_alloc(size_t bytes);
    Status upload_weight(const Weight& w, const std::string& name, DevWeight* out);  // name: for errors
    Status upload_floats(const std::vector<float>& v, const float** out);
    Status ensure_scratch(int tokens, size_t meta_ints);
    Status ensure_rope(int positions);
    void free_scratch();
    void drop_graphs();
    // The pass proper (all kernels, no copies to or from the host): graph-capturable.
    void run(int T, int M, int layer_end, const std::vector<int>& active, const cuda::DevKv& kv_base,
             const KvBlockPool& pool, size_t off_pos, size_t off_table_of, size_t off_rows, size_t off_tables);
    // Which input the scratch activations hold, per format: an input is quantized
    // once for all the matrices that read it (wq/wk/wv, gate/up), in each format
    // their types need (a Q4_K_M layer mixes Q4_K, Q6_K and maybe Q5_0).
    struct Quantized {
        const float* x32 = nullptr;  // in s_.xq
        bool with_s = false;         // ... as Q8_1 (else Q8_0)
        const float* xk = nullptr;   // in s_.xk
    };
    // y = w x for n tokens; quantizes x into scratch unless it is already there.
    void project(const DevWeight& w, const float* x, int n, float* y, Quantized* quantized);
    Status upload_optional(const std::vector<float>& v, const float** out);

    LlamaHParams hp_;
    int E_ = 0, F_ = 0, H_ = 0, HKV_ = 0, HD_ = 0, EQ_ = 0, EKV_ = 0, V_ = 0, L_ = 0;
    DeviceInfo info_;
    cudaStream_t stream_ = nullptr;
    std::vector<void*> weights_;  // every weight allocation, freed in the destructor
    std::vector<Layer> layers_;
    DevWeight embd_, head_;
    const float* out_norm_ = nullptr;
    std::vector<float> rope_factors_;
    float* rope_cs_ = nullptr;
    int rope_positions_ = 0;
    Scratch s_;
    bool use_graphs_ = true;
    std::map<GraphKey, cudaGraphExec_t> graphs_;
    std::mutex mu_;  // one pass (or block copy) on the stream at a time
};

// The bytes a matrix takes on the device (repack.hpp's layout per type): the memory
// bound open() checks before uploading anything.
size_t device_bytes(const Weight& w) { return cuda::device_weight_bytes(w.type, w.rows, w.cols); }

Result<std::unique_ptr<DeviceModel>> CudaModel::open(const Model& m) {
    auto device = cuda::probe_device();
    if (!device.ok()) return device.status();
    const LlamaHParams& hp = m.hparams();
    std::unique_ptr<CudaModel> c(new CudaModel());
    c->hp_ = hp;
    c->info_ = device.value();
    c->E_ = int(hp.n_embd), c->F_ = int(hp.n_ff), c->H_ = int(hp.n_head), c->HKV_ = int(hp.n_head_kv);
    c->HD_ = int(hp.head_dim()), c->EQ_ = int(hp.n_embd_q()), c->EKV_ = int(hp.n_embd_kv()), c->V_ = m.n_vocab();
    c->L_ = m.n_layer();
    if (c->HD_ > cuda::kMaxHeadDim)
        return Status::error("head dimension " + std::to_string(c->HD_) + " is above the CUDA kernels' " +
                             std::to_string(cuda::kMaxHeadDim));
    if (c->E_ % 32 != 0 || c->F_ % 32 != 0 || c->EQ_ % 32 != 0 || c->EKV_ % 4 != 0)
        return Status::error("the CUDA kernels need n_embd, n_ff and n_head * head_dim to be multiples of 32");
    if (const char* g = std::getenv("REPRISE_CUDA_GRAPHS"); g && std::strcmp(g, "0") == 0) c->use_graphs_ = false;

    // Everything must fit, with room left for the KV pool and scratch: say so up front
    // rather than fail half-way through the upload.
    size_t need = device_bytes(m.token_embedding()) + (m.tied_output() ? 0 : device_bytes(m.output_head()));
    for (int l = 0; l < c->L_; ++l) {
        const Model::Layer& Ly = m.layer(l);
        for (const Weight* w : {&Ly.wq, &Ly.wk, &Ly.wv, &Ly.wo, &Ly.gate, &Ly.up, &Ly.down}) need += device_bytes(*w);
    }
    size_t free_b = 0, total_b = 0;
    if (Status s = check(cudaSetDevice(0), "cudaSetDevice"); !s.ok()) return s;
    if (Status s = check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo"); !s.ok()) return s;
    if (need > free_b)
        return Status::error("the model's weights take " + std::to_string(need >> 20) + " MiB on the device, " +
                             std::to_string(free_b >> 20) + " MiB are free");
    if (Status s = check(cudaStreamCreateWithFlags(&c->stream_, cudaStreamNonBlocking), "cudaStreamCreate"); !s.ok())
        return s;

    if (Status s = c->upload_weight(m.token_embedding(), "token_embd.weight", &c->embd_); !s.ok()) return s;
    if (m.tied_output()) c->head_ = c->embd_;
    else if (Status s = c->upload_weight(m.output_head(), "output.weight", &c->head_); !s.ok()) return s;
    if (Status s = c->upload_floats(m.output_norm(), &c->out_norm_); !s.ok()) return s;
    for (int l = 0; l < c->L_; ++l) {
        const Model::Layer& src = m.layer(l);
        Layer dst;
        if (Status s = c->upload_floats(src.attn_norm, &dst.attn_norm); !s.ok()) return s;
        if (Status s = c->upload_floats(src.ffn_norm, &dst.ffn_norm); !s.ok()) return s;
        const std::pair<const std::vector<float>*, const float**> extra[] = {
            {&src.bq, &dst.bq}, {&src.bk, &dst.bk}, {&src.bv, &dst.bv}, {&src.q_norm, &dst.q_norm}, {&src.k_norm, &dst.k_norm}};
        for (auto [v, d] : extra)
            if (Status s = c->upload_optional(*v, d); !s.ok()) return s;
        const std::tuple<const Weight*, const char*, DevWeight*> ws[] = {
            {&src.wq, "attn_q", &dst.wq},       {&src.wk, "attn_k", &dst.wk},     {&src.wv, "attn_v", &dst.wv},
            {&src.wo, "attn_output", &dst.wo},  {&src.gate, "ffn_gate", &dst.gate}, {&src.up, "ffn_up", &dst.up},
            {&src.down, "ffn_down", &dst.down}};
        for (auto [w, name, d] : ws)
            if (Status s = c->upload_weight(*w, "blk." + std::to_string(l) + "." + name + ".weight", d); !s.ok()) return s;
        c->layers_.push_back(dst);
    }
    c->rope_factors_ = m.rope_freqs();
    if (Status s = check(cudaStreamSynchronize(c->stream_), "upload"); !s.ok()) return s;
    return std::unique_ptr<DeviceModel>(std::move(c));
}

CudaModel::~CudaModel() {
    if (stream_) cudaStreamSynchronize(stream_);
    drop_graphs();
    free_scratch();
    cudaFree(rope_cs_);
    for (void* p : weights_) cudaFree(p);
    if (stream_) cudaStreamDestroy(stream_);
}

void* CudaModel::device_alloc(size_t bytes) {
    void* p = nullptr;
    if (cudaMalloc(&p, std::max<size_t>(bytes, 1)) != cudaSuccess) {
        (void)cudaGetLastError();
        return nullptr;
    }
    weights_.push_back(p);
    return p;
}

// Repacks ggml's blocks into the aligned arrays DevWeight points at (repack.hpp).
Status CudaModel::upload_weight(const Weight& w, const std::string& name, DevWeight* out) {
    if (!cuda::device_weight_type(w.type, &out->type))
        return Status::error(name + ": weight type " + std::string(ggml_type_name(uint32_t(w.type))) + " has no CUDA kernel");
    out->rows = w.rows;
    out->cols = w.cols;
    if (w.type == GgmlType::F32) {
        if (w.cols % 4 != 0) return Status::error(name + ": F32 matrices need a multiple of 4 columns on CUDA");
        void* f = device_alloc(w.data.size());
        if (!f) return Status::error("out of device memory uploading the weights");
        out->f = static_cast<const float*>(f);
        return check(cudaMemcpy(f, w.data.data(), w.data.size(), cudaMemcpyHostToDevice), "weight upload");
    }
    cuda::RepackedWeight r;
    if (!cuda::repack_weight(w.type, w.data.data(), w.rows, w.cols, &r))
        return Status::error(name + ": cannot repack a " + std::string(ggml_type_name(uint32_t(w.type))) +
                             " matrix of " + std::to_string(w.cols) + " columns for CUDA");
    // Each part in an allocation of its own: cudaMalloc aligns to 256 bytes.
    auto part = [&](const void* host, size_t bytes, const void** dev) -> Status {
        if (bytes == 0) return Status();
        void* p = device_alloc(bytes);
        if (!p) return Status::error("out of device memory uploading the weights");
        *dev = p;
        return check(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice), "weight upload");
    };
    const void *qs = nullptr, *qh = nullptr, *d = nullptr, *m = nullptr;
    if (Status s = part(r.qs.data(), r.qs.size(), &qs); !s.ok()) return s;
    if (Status s = part(r.qh.data(), r.qh.size() * sizeof(uint32_t), &qh); !s.ok()) return s;
    if (Status s = part(r.d.data(), r.d.size() * sizeof(uint16_t), &d); !s.ok()) return s;
    if (Status s = part(r.m.data(), r.m.size() * sizeof(uint16_t), &m); !s.ok()) return s;
    out->qs = static_cast<const int8_t*>(qs);
    out->qh = static_cast<const uint32_t*>(qh);
    out->d = static_cast<const uint16_t*>(d);
    out->m = static_cast<const uint16_t*>(m);
    return Status();
}

Status CudaModel::upload_optional(const std::vector<float>& v, const float** out) {
    *out = nullptr;
    return v.empty() ? Status() : upload_floats(v, out);
}

Status CudaModel::upload_floats(const std::vector<float>& v, const float** out) {
    void* p = device_alloc(v.size() * sizeof(float));
    if (!p) return Status::error("out of device memory uploading the weights");
    *out = static_cast<const float*>(p);
    return check(cudaMemcpy(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice), "weight upload");
}

std::unique_ptr<KvStorage> CudaModel::new_kv_storage(size_t n_floats) {
    std::lock_guard lock(mu_);
    if (cudaSetDevice(0) != cudaSuccess) return nullptr;
    // Copy-on-write copies go on the model's stream, under its lock (never into a graph
    // being captured), so they land before the pass that reads the copy.
    return cuda::DeviceKvStorage::create(n_floats, [this](float* dst, const float* src, size_t n) {
        std::lock_guard copy_lock(mu_);
        cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_);
    });
}

void CudaModel::free_scratch() {
    for (float* p : {s_.x, s_.xb, s_.q, s_.k, s_.v, s_.att, s_.o, s_.g, s_.u, s_.rows, s_.logits, s_.xq.d, s_.xq.s, s_.xk.d})
        cudaFree(p);
    cudaFree(s_.xq.qs);
    cudaFree(s_.xk.qs);
    cudaFree(s_.xk.bsums);
    cudaFree(s_.meta);
    cudaFreeHost(s_.meta_host);
    cudaFreeHost(s_.logits_host);
    s_ = Scratch{};
}

void CudaModel::drop_graphs() {
    for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
    graphs_.clear();
}

Status CudaModel::ensure_scratch(int tokens, size_t meta_ints) {
    if (tokens <= s_.tokens && meta_ints <= s_.meta_ints) return Status();
    drop_graphs();  // they point at the buffers about to be freed
    const int T = std::max({tokens, 2 * s_.tokens, 16});
    const size_t meta = std::max({meta_ints, 2 * s_.meta_ints, size_t(4096)});
    free_scratch();
    const size_t t = size_t(T), widest = size_t(std::max({E_, F_, EQ_}));
    const size_t widest256 = (widest + 255) / 256 * 256;  // Q8_K rows: whole super-blocks
    bool ok = true;
    auto grab = [&](auto** p, size_t count) {
        if (cudaMalloc(reinterpret_cast<void**>(p), count * sizeof(**p)) != cudaSuccess) ok = false;
    };
    grab(&s_.x, t * E_), grab(&s_.xb, t * E_), grab(&s_.q, t * EQ_), grab(&s_.k, t * EKV_), grab(&s_.v, t * EKV_);
    grab(&s_.att, t * EQ_), grab(&s_.o, t * E_), grab(&s_.g, t * F_), grab(&s_.u, t * F_), grab(&s_.rows, t * E_);
    grab(&s_.logits, t * V_), grab(&s_.xq.qs, t * widest), grab(&s_.xq.d, t * widest / 32);
    grab(&s_.xq.s, t * widest / 32), grab(&s_.xk.qs, t * widest256), grab(&s_.xk.d, t * widest256 / 256);
    grab(&s_.xk.bsums, t * widest256 / 16), grab(&s_.meta, meta);
    if (cudaMallocHost(reinterpret_cast<void**>(&s_.meta_host), meta * sizeof(int32_t)) != cudaSuccess) ok = false;
    if (cudaMallocHost(reinterpret_cast<void**>(&s_.logits_host), t * V_ * sizeof(float)) != cudaSuccess) ok = false;
    if (!ok) {
        (void)cudaGetLastError();
        free_scratch();
        return Status::error("out of device memory for a pass of " + std::to_string(tokens) + " tokens");
    }
    s_.tokens = T;
    s_.meta_ints = meta;
    return Status();
}

Status CudaModel::ensure_rope(int positions) {
    if (positions <= rope_positions_) return Status();
    drop_graphs();
    const int P = std::max({positions, 2 * rope_positions_, 1024});
    const int pairs = int(hp_.n_rot) / 2;
    std::vector<float> table(size_t(P) * pairs * 2);
    const float* factors = rope_factors_.empty() ? nullptr : rope_factors_.data();
    for (int p = 0; p < P; ++p)
        rope_cos_sin(&table[size_t(p) * pairs * 2], int(hp_.n_rot), p, hp_.rope_freq_base, hp_.rope_freq_scale, factors);
    float* fresh = nullptr;
    if (cudaMalloc(reinterpret_cast<void**>(&fresh), table.size() * sizeof(float)) != cudaSuccess) {
        (void)cudaGetLastError();
        return Status::error("out of device memory for the RoPE table");
    }
    if (Status s = check(cudaMemcpy(fresh, table.data(), table.size() * sizeof(float), cudaMemcpyHostToDevice), "rope table");
        !s.ok()) {
        cudaFree(fresh);
        return s;
    }
    cudaFree(rope_cs_);
    rope_cs_ = fresh;
    rope_positions_ = P;
    return Status();
}

void CudaModel::project(const DevWeight& w, const float* x, int n, float* y, Quantized* quantized) {
    if (w.type == WeightType::F32) return cuda::matmul_f32(w, x, n, y, stream_);
    const ActFormat format = cuda::act_format(w.type);
    cuda::DevQ8 act = s_.xq;
    if (format == ActFormat::Q8_K) {
        act = s_.xk;
        if (quantized->xk != x) {
            cuda::quantize_q8_K(x, n, w.cols, s_.xk, stream_);
            quantized->xk = x;
        }
    } else if (const bool with_s = format == ActFormat::Q8_1; quantized->x32 != x || (with_s && !quantized->with_s)) {
        // Q8_1's qs and d are Q8_0's: a Q8_1 copy serves Q8_0 weights too.
        if (with_s) cuda::quantize_q8_1(x, n, w.cols, s_.xq, stream_);
        else cuda::quantize_q8_0(x, n, w.cols, s_.xq, stream_);
        quantized->x32 = x;
        quantized->with_s = with_s;
    }
    if (n <= cuda::kMatvecMaxTokens) cuda::matvec_q(w, act, n, y, stream_);
    else cuda::matmul_q(w, act, n, y, stream_);
}

void CudaModel::run(int T, int M, int layer_end, const std::vector<int>& active, const cuda::DevKv& kv_base,
                    const KvBlockPool& pool, size_t off_pos, size_t off_table_of, size_t off_rows, size_t off_tables) {
    cudaStream_t st = stream_;
    const int32_t* meta = s_.meta;
    cuda::embed_rows(embd_, meta, T, s_.x, st);  // rows with id -1 hold a copied-in hidden state
    cuda::DevKv kv = kv_base;
    kv.tables = meta + off_tables;
    kv.table_of = meta + off_table_of;
    kv.pos = meta + off_pos;
    for (int l = 0; l < layer_end; ++l) {
        const int n = active[size_t(l)];
        if (n == 0) continue;
        const Layer& Ly = layers_[size_t(l)];
        Quantized quantized;  // which buffers the scratch activations are copies of
        cuda::rmsnorm(s_.x, nullptr, Ly.attn_norm, s_.xb, n, E_, hp_.rms_eps, st);
        project(Ly.wq, s_.xb, n, s_.q, &quantized);
        project(Ly.wk, s_.xb, n, s_.k, &quantized);
        project(Ly.wv, s_.xb, n, s_.v, &quantized);
        if (Ly.bq) {  // qwen2: biases, before RoPE
            cuda::add_bias(s_.q, Ly.bq, n, EQ_, st);
            cuda::add_bias(s_.k, Ly.bk, n, EKV_, st);
            cuda::add_bias(s_.v, Ly.bv, n, EKV_, st);
        }
        if (Ly.q_norm) {  // qwen3: RMSNorm of each Q and K head, before RoPE
            cuda::rmsnorm_heads(s_.q, Ly.q_norm, n * H_, HD_, hp_.rms_eps, st);
            cuda::rmsnorm_heads(s_.k, Ly.k_norm, n * HKV_, HD_, hp_.rms_eps, st);
        }
        cuda::rope(s_.q, kv.pos, n, H_, HD_, int(hp_.n_rot), rope_cs_, hp_.rope_neox, st);
        cuda::rope(s_.k, kv.pos, n, HKV_, HD_, int(hp_.n_rot), rope_cs_, hp_.rope_neox, st);
        kv.k_offset = pool.k_offset(l);
        kv.v_offset = pool.v_offset(l);
        cuda::kv_write(kv, s_.k, s_.v, n, st);
        cuda::attention_paged(kv, s_.q, n, H_, HKV_, HD_, s_.att, st);
        project(Ly.wo, s_.att, n, s_.o, &quantized);
        cuda::add_inplace(s_.x, s_.o, size_t(n) * E_, st);

        cuda::rmsnorm(s_.x, nullptr, Ly.ffn_norm, s_.xb, n, E_, hp_.rms_eps, st);
        quantized = {};  // xb holds new values: the attention's quantized copies are stale
        project(Ly.gate, s_.xb, n, s_.g, &quantized);
        project(Ly.up, s_.xb, n, s_.u, &quantized);
        cuda::swiglu(s_.g, s_.g, s_.u, size_t(n) * F_, st);
        project(Ly.down, s_.g, n, s_.o, &quantized);
        cuda::add_inplace(s_.x, s_.o, size_t(n) * E_, st);
    }
    if (M == 0) return;
    // The head over the rows that want logits, gathered so it is one product.
    Quantized quantized;
    cuda::rmsnorm(s_.x, meta + off_rows, out_norm_, s_.rows, M, E_, hp_.rms_eps, st);
    project(head_, s_.rows, M, s_.logits, &quantized);
}

Status CudaModel::forward(BatchItem* items, int n_items, int layer_end) {
    std::lock_guard lock(mu_);
    if (Status s = check(cudaSetDevice(0), "cudaSetDevice"); !s.ok()) return s;
    const KvBlockPool& pool = *items[0].kv->pool();

    // Tokens in order of layer_begin, as forward_cpu: a layer runs on a prefix of them.
    std::vector<int> order(static_cast<size_t>(n_items));
    for (int i = 0; i < n_items; ++i) order[size_t(i)] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return items[a].layer_begin < items[b].layer_begin; });
    int T = 0, M = 0, max_pos = 0;
    size_t table_ints = 0;
    bool all_tokens = true;
    for (int i = 0; i < n_items; ++i) {
        T += items[i].n;
        M += items[i].n_logits;
        max_pos = std::max(max_pos, items[i].pos0 + items[i].n);
        table_ints += items[i].kv->blocks().size();
        all_tokens = all_tokens && !items[i].hidden;
    }
    std::vector<int> active(size_t(layer_end), 0);
    for (int l = 0, next = 0, count = 0; l < layer_end; ++l) {
        while (next < n_items && items[order[size_t(next)]].layer_begin <= l) count += items[order[size_t(next++)]].n;
        active[size_t(l)] = count;
    }

    // Metadata, one upload: ids [T] | pos [T] | table_of [T] | logit rows [M] | tables.
    const size_t off_pos = size_t(T), off_table_of = 2 * size_t(T), off_rows = 3 * size_t(T);
    const size_t off_tables = off_rows + size_t(M);
    if (Status s = ensure_scratch(T, off_tables + table_ints); !s.ok()) return s;
    if (Status s = ensure_rope(max_pos); !s.ok()) return s;
    int32_t* h = s_.meta_host;
    std::vector<int> first_tok(size_t(n_items), 0);
    size_t table_at = off_tables;
    for (int r = 0, oi = 0; oi < n_items; ++oi) {
        const int i = order[size_t(oi)];
        const BatchItem& it = items[i];
        first_tok[size_t(i)] = r;
        const auto& blocks = it.kv->blocks();
        std::memcpy(h + table_at, blocks.data(), blocks.size() * sizeof(int32_t));
        for (int t = 0; t < it.n; ++t, ++r) {
            h[r] = it.hidden ? -1 : it.tokens[t];
            h[off_pos + size_t(r)] = it.pos0 + t;
            h[off_table_of + size_t(r)] = int32_t(table_at - off_tables);
        }
        table_at += blocks.size();
    }
    for (int i = 0, m = 0; i < n_items; ++i)
        for (int t = items[i].n - items[i].n_logits; t < items[i].n; ++t, ++m) h[off_rows + size_t(m)] = first_tok[size_t(i)] + t;
    if (Status s = check(cudaMemcpyAsync(s_.meta, h, table_at * sizeof(int32_t), cudaMemcpyHostToDevice, stream_), "metadata upload");
        !s.ok())
        return s;
    for (int i = 0; i < n_items; ++i)
        if (items[i].hidden)
            if (Status s = check(cudaMemcpyAsync(s_.x + size_t(first_tok[size_t(i)]) * E_, items[i].hidden,
                                                 sizeof(float) * size_t(items[i].n) * E_, cudaMemcpyHostToDevice, stream_),
                                 "hidden state upload");
                !s.ok())
                return s;

    cuda::DevKv kv;
    kv.base = const_cast<float*>(pool.data());
    kv.block_size = pool.block_size();
    kv.block_stride = pool.block_stride();
    kv.row_stride = EKV_;
    auto body = [&] { run(T, M, layer_end, active, kv, pool, off_pos, off_table_of, off_rows, off_tables); };
    if (use_graphs_ && all_tokens && T <= kGraphMaxTokens) {
        const GraphKey key{T, M, layer_end, pool.data(), pool.block_size(), s_.meta_ints};
        auto it = graphs_.find(key);
        if (it == graphs_.end()) {
            if (graphs_.size() >= kMaxGraphs) drop_graphs();
            cudaGraph_t graph = nullptr;
            cudaGraphExec_t exec = nullptr;
            if (Status s = check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "graph capture"); !s.ok())
                return s;
            body();
            if (Status s = check(cudaStreamEndCapture(stream_, &graph), "graph capture"); !s.ok()) return s;
            const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
            cudaGraphDestroy(graph);
            if (Status s = check(e, "graph instantiation"); !s.ok()) return s;
            it = graphs_.emplace(key, exec).first;
        }
        if (Status s = check(cudaGraphLaunch(it->second, stream_), "graph launch"); !s.ok()) return s;
    } else {
        body();
    }
    if (Status s = check(cudaGetLastError(), "kernel launch"); !s.ok()) return s;

    for (int i = 0; i < n_items; ++i)
        if (items[i].hidden_out)
            if (Status s = check(cudaMemcpyAsync(items[i].hidden_out, s_.x + size_t(first_tok[size_t(i)]) * E_,
                                                 sizeof(float) * size_t(items[i].n) * E_, cudaMemcpyDeviceToHost, stream_),
                                 "hidden state download");
                !s.ok())
                return s;
    if (M > 0)
        if (Status s = check(cudaMemcpyAsync(s_.logits_host, s_.logits, sizeof(float) * size_t(M) * V_,
                                             cudaMemcpyDeviceToHost, stream_),
                             "logits download");
            !s.ok())
            return s;
    // A failure here (an illegal address, say) leaves the device context unusable.
    if (Status s = check(cudaStreamSynchronize(stream_), "CUDA forward pass"); !s.ok()) return s;
    for (int i = 0, m = 0; i < n_items; ++i) {
        if (items[i].n_logits == 0) continue;
        std::memcpy(items[i].logits, s_.logits_host + size_t(m) * V_, sizeof(float) * size_t(items[i].n_logits) * V_);
        m += items[i].n_logits;
    }
    return Status();
}

}  // namespace

Result<std::unique_ptr<DeviceModel>> cuda_model_open(const Model& model) { return CudaModel::open(model); }

}  // namespace reprise::engine
