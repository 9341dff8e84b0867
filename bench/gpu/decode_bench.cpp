// The CUDA engine against the H100's limits (issue 8), on a generated model of the
// Llama-3.2-1B shape (dim 2048, FFN 8192, 16 layers, 32 heads / 8 KV heads, the
// Llama 3 vocabulary of 128,256 tokens, tied output) with random weights: speed does
// not depend on what the weights say.
//
//   a. decode at batch 1, Q8_0, Q4_0 and Q4_K_M (Q4_K, Q6_K for the head and half of
//      attn_v / ffn_down, as llama.cpp's mix): tokens/s and the memory bandwidth that
//      implies: every decode step reads every matrix once (the tied head included)
//      plus the KV rows it attends to, so bytes/step x steps/s over 3.35 TB/s (the
//      H100 SXM's HBM3) is the fraction of the roofline reached;
//   b. batched decode through the scheduler at 16 and 64 sequences (Q8_0);
//   c. self-speculative decoding (LayerSkip) at batch 1 on a synthetic early-exit
//      model (model_maker.hpp: late layers scaled down, so the draft is good on
//      purpose): the speed-up over plain decoding of the same model, and acceptance;
//   d. joules per generated token from NVML's energy counter for a, b and c (whole
//      board, windows of at least 2 s).
//
// Prints a Markdown table (and writes it with --out). Needs a CUDA device; says so
// and exits 2 without one. Usage (the device machine; `make bench-gpu`):
//   engine_gpu_bench --vocab ../shared/fixtures/vocab/ggml-vocab-llama-bpe.gguf [--out FILE.md]
//                    [--decode N] [--quick]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "engine/cuda/device.hpp"
#include "engine/cuda/repack.hpp"
#include "engine/model_maker.hpp"
#include "engine/nvml_energy.hpp"
#include "engine/scheduler.hpp"

using namespace reprise::engine;

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kPeakBytesPerSecond = 3.35e12;  // H100 SXM5 HBM3

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Options {
    std::string vocab = "../shared/fixtures/vocab/ggml-vocab-llama-bpe.gguf";
    std::string out;
    int decode = 512;     // tokens per batch-1 decode run
    bool quick = false;   // fewer/shorter runs (a smoke check of the bench itself)
};

struct Loaded {
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tokenizer;
};

// Llama-3.2-1B's shape with random weights, written to a temporary GGUF and loaded on CUDA.
Result<Loaded> make_model(const GgufFile& vocab, GgmlType type, float late_scale, uint32_t late_from,
                          QuantMix mix = QuantMix::Pure) {
    TinyLlamaShape s;
    s.n_embd = 2048, s.n_ff = 8192, s.n_layer = 16, s.n_head = 32, s.n_head_kv = 8, s.n_ctx = 8192;
    s.type = type;
    s.mix = mix;
    s.tie_output = true;
    s.rope_freq_base = 500000.0f;
    s.late_layer_scale = late_scale, s.late_from = late_from;
    s.name = "llama-3.2-1b-shape";
    GgufWriter w;
    if (Status st = make_tiny_llama(s, vocab, &w); !st.ok()) return st;
    const std::string path = (std::filesystem::temp_directory_path() / ("reprise-gpu-bench-" + std::to_string(::getpid()) + ".gguf")).string();
    if (Status st = w.write_file(path); !st.ok()) return st;
    auto f = GgufFile::open(path);
    if (!f.ok()) return f.status();
    ModelOptions mo;
    mo.device = Device::Cuda;
    auto m = Model::from_gguf(**f, mo);
    auto t = Tokenizer::from_gguf(**f);
    std::filesystem::remove(path);
    if (!m.ok()) return m.status();
    if (!t.ok()) return t.status();
    return Loaded{std::move(m.value()), std::move(t.value())};
}

// Bytes one decode step reads from HBM: every matrix once as uploaded (its type's
// device bytes, cuda/repack.hpp: Q8_0 34 bytes per 32 weights, Q4_0 18, Q4_K 144 per
// 256, Q6_K 210) including the tied head, plus the K/V rows of `context` positions.
double bytes_per_token(const Model& m, double context) {
    const auto& hp = m.hparams();
    auto bytes = [](const Weight& w) { return double(cuda::device_weight_bytes(w.type, w.rows, w.cols)); };
    double weights = bytes(m.tied_output() ? m.token_embedding() : m.output_head());
    for (int l = 0; l < m.n_layer(); ++l) {
        const Model::Layer& L = m.layer(l);
        for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down}) weights += bytes(*w);
    }
    const double kv = 2.0 * hp.n_layer * hp.n_embd_kv() * sizeof(float) * context;
    return weights + kv;
}

struct Energy {
    std::unique_ptr<NvmlEnergy> nvml;
    uint64_t start = 0;
    bool ok = false;
    void begin() { ok = nvml && nvml->read_mj(&start); }
    // Joules since begin(), or -1 when the counter is unavailable.
    double joules() {
        uint64_t now = 0;
        return ok && nvml->read_mj(&now) ? double(now - start) / 1000.0 : -1.0;
    }
};

struct Row {
    std::string what, type;
    double tokens_per_s = 0, bandwidth_fraction = -1, joules_per_token = -1, extra = -1;
    std::string extra_name;
};

// Greedy decode at batch 1 through Model::forward: `n` tokens after a 128-token prompt,
// repeated until at least `min_seconds` have passed (for the energy window).
Row decode_batch1(const Model& m, int n, double min_seconds, Energy& energy) {
    std::vector<int32_t> prompt(128);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t(1000 + i * 7);
    std::vector<float> logits(size_t(m.n_vocab()));
    int tokens = 0;
    double secs = 0;
    energy.begin();
    do {
        auto kv = m.new_kv_cache(int(prompt.size()) + n);
        if (!kv || !m.forward(*kv, prompt.data(), int(prompt.size()), 0, logits.data()).ok()) break;
        const auto t0 = Clock::now();
        for (int i = 0; i < n; ++i) {
            const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
            if (!m.forward(*kv, &next, 1, int(prompt.size()) + i, logits.data()).ok()) break;
            ++tokens;
        }
        secs += seconds_since(t0);
    } while (secs < min_seconds);
    const double j = energy.joules();
    Row r;
    r.what = "decode, batch 1";
    r.type = ggml_type_name(uint32_t(m.matrix_type()));
    r.tokens_per_s = tokens / secs;
    r.bandwidth_fraction = bytes_per_token(m, 128 + n / 2.0) * r.tokens_per_s / kPeakBytesPerSecond;
    if (j >= 0) r.joules_per_token = j / tokens;  // includes the prompts' prefill: small beside n decode steps
    return r;
}

// `sequences` greedy jobs of 1 sample each, 128 prompt and `n` generated tokens, through
// the scheduler: generated tokens per second over the whole run.
Row batched(const Loaded& l, int sequences, int n, int exit_layer, Energy& energy) {
    SchedulerOptions o;
    o.n_ctx = 1024;
    o.max_sequences = std::max(64, sequences);
    o.n_blocks = (o.n_ctx / 16 + 1) * sequences + 64;
    o.exit_layer = exit_layer;
    o.draft_tokens = 4;
    Scheduler s(*l.model, *l.tokenizer, {}, o);
    Row r;
    if (!s.kv_ready()) return r;
    int done = 0;
    for (int j = 0; j < sequences; ++j) {
        Submission sub;
        sub.n = 1;
        sub.max_tokens = n;
        sub.sampler.temperature = 0.0f;
        sub.key_hash = uint64_t(j + 1);
        sub.first_index = [] { return uint64_t(0); };
        Callbacks cb;
        cb.on_done = [&done](const Completion*, const EngineError*) { ++done; };
        std::vector<TokenId> prompt(128);
        for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = TokenId(1000 + (i * 7 + size_t(j) * 131) % 50000);
        s.add(std::move(sub), std::move(cb), std::move(prompt));
    }
    energy.begin();
    const auto t0 = Clock::now();
    while (!s.idle()) s.step();
    const double secs = seconds_since(t0), j = energy.joules();
    const auto& c = s.counters();
    r.what = exit_layer ? "self-speculative, batch " + std::to_string(sequences) : "decode, batch " + std::to_string(sequences);
    r.type = ggml_type_name(uint32_t(l.model->matrix_type()));
    r.tokens_per_s = double(c.generated_tokens) / secs;
    if (j >= 0 && c.generated_tokens) r.joules_per_token = j / double(c.generated_tokens);
    if (exit_layer) r.extra = c.drafted ? double(c.accepted) / double(c.drafted) : 0, r.extra_name = "acceptance";
    return r;
}

std::string fmt(double v, const char* f) {
    if (v < 0) return "-";
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        const char* v = nullptr;
        if (a == "--vocab" && (v = val())) opt.vocab = v;
        else if (a == "--out" && (v = val())) opt.out = v;
        else if (a == "--decode" && (v = val())) opt.decode = std::atoi(v);
        else if (a == "--quick") opt.quick = true;
        else {
            std::fprintf(stderr, "usage: engine_gpu_bench [--vocab VOCAB.gguf] [--out FILE.md] [--decode N] [--quick]\n");
            return 2;
        }
    }
    auto device = cuda::probe_device();
    if (!device.ok()) {
        std::fprintf(stderr, "engine_gpu_bench needs a CUDA device: %s\n", device.error().c_str());
        return 2;
    }
    auto vocab = GgufFile::open(opt.vocab);
    if (!vocab.ok()) {
        std::fprintf(stderr, "vocabulary %s: %s (the Llama 3 one is ggml-vocab-llama-bpe.gguf in the shared fixtures)\n",
                     opt.vocab.c_str(), vocab.error().c_str());
        return 2;
    }
    Energy energy;
    if (auto nv = NvmlEnergy::open(device->pci_bus_id); nv.ok()) energy.nvml = std::move(nv.value());
    else std::fprintf(stderr, "no energy figures: %s\n", nv.error().c_str());
    const double min_seconds = opt.quick ? 0.2 : 2.0;
    const int batched_tokens = opt.quick ? 32 : 256;

    std::vector<Row> rows;
    auto progress = [](const Row& r) {
        std::fprintf(stderr, "%-32s %-5s %9.1f tok/s\n", r.what.c_str(), r.type.c_str(), r.tokens_per_s);
    };
    struct Decoded { GgmlType type; QuantMix mix; const char* label; };
    for (const Decoded& d : {Decoded{GgmlType::Q8_0, QuantMix::Pure, "Q8_0"}, Decoded{GgmlType::Q4_0, QuantMix::Pure, "Q4_0"},
                             Decoded{GgmlType::F32, QuantMix::Q4_K_M, "Q4_K_M"}}) {
        const GgmlType type = d.type;
        auto l = make_model(**vocab, type, 1.0f, 0, d.mix);
        if (!l.ok()) {
            std::fprintf(stderr, "model: %s\n", l.error().c_str());
            return 1;
        }
        rows.push_back(decode_batch1(*l->model, opt.decode, min_seconds, energy));
        rows.back().type = d.label;
        progress(rows.back());
        if (type == GgmlType::Q8_0)
            for (int b : {16, 64}) {
                rows.push_back(batched(*l, b, batched_tokens, 0, energy));
                progress(rows.back());
            }
    }
    // Speculation: the same synthetic early-exit model with and without drafting.
    {
        auto l = make_model(**vocab, GgmlType::Q8_0, 0.2f, 8);
        if (!l.ok()) {
            std::fprintf(stderr, "model: %s\n", l.error().c_str());
            return 1;
        }
        Row plain = batched(*l, 1, opt.quick ? 64 : 512, 0, energy);
        plain.what = "early-exit model, plain decode, batch 1";
        Row spec = batched(*l, 1, opt.quick ? 64 : 512, 8, energy);
        spec.what = "early-exit model, E=8 k=4, batch 1";
        if (plain.tokens_per_s > 0) spec.extra_name = "acceptance; speed-up " + fmt(spec.tokens_per_s / plain.tokens_per_s, "%.2fx");
        rows.push_back(plain), progress(plain);
        rows.push_back(spec), progress(spec);
    }

    std::string md = "Device: " + device->name + " (sm_" + std::to_string(device->compute_capability) + ", " +
                     std::to_string(device->memory_bytes >> 20) + " MiB). Model: Llama-3.2-1B shape, random weights.\n\n";
    md += "| run | weights | tokens/s | HBM bandwidth (of 3.35 TB/s) | J/token (NVML, board) | notes |\n";
    md += "| --- | --- | ---: | ---: | ---: | --- |\n";
    for (auto& r : rows)
        md += "| " + r.what + " | " + r.type + " | " + fmt(r.tokens_per_s, "%.1f") + " | " +
              fmt(r.bandwidth_fraction * 100, "%.1f%%") + " | " + fmt(r.joules_per_token, "%.4f") + " | " +
              (r.extra >= 0 ? r.extra_name + " " + fmt(r.extra * 100, "%.1f%%") : "") + " |\n";
    std::printf("%s", md.c_str());
    if (!opt.out.empty()) {
        if (FILE* f = std::fopen(opt.out.c_str(), "w")) {
            std::fputs(md.c_str(), f);
            std::fclose(f);
        }
    }
    return 0;
}
