// engine_bench: prefill and decode tokens/s of a generated Llama (random weights, the
// llama-spm vocabulary) in Q8_0 and Q4_0 on the CPU.
//   engine_bench [--vocab VOCAB.gguf] [--threads N] [--prompt 128] [--decode 32]
//                [--dim 768 --hidden 2048 --layers 12 --heads 12 --kv-heads 4] [--types q8_0,q4_0]
// The default shape is ~100M parameters (24.6M of them the tied 32,000 x 768 embedding).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/gguf.hpp"
#include "engine/model.hpp"
#include "engine/model_maker.hpp"

using namespace reprise::engine;

int main(int argc, char** argv) {
    std::string vocab = "../shared/fixtures/vocab/ggml-vocab-llama-spm.gguf";
    std::string types = "q8_0,q4_0";
    int threads = 2, n_prompt = 128, n_decode = 32;
    TinyLlamaShape s;
    s.n_embd = 768; s.n_ff = 2048; s.n_layer = 12; s.n_head = 12; s.n_head_kv = 4; s.n_ctx = 1024; s.tie_output = true;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        const char* v = argv[i + 1];
        const uint32_t u = uint32_t(std::strtoul(v, nullptr, 10));
        if (a == "--vocab") vocab = v;
        else if (a == "--threads") threads = int(u);
        else if (a == "--prompt") n_prompt = int(u);
        else if (a == "--decode") n_decode = int(u);
        else if (a == "--dim") s.n_embd = u;
        else if (a == "--hidden") s.n_ff = u;
        else if (a == "--layers") s.n_layer = u;
        else if (a == "--heads") s.n_head = u;
        else if (a == "--kv-heads") s.n_head_kv = u;
        else if (a == "--types") types = v;
        else { std::fprintf(stderr, "unknown option %s\n", a.c_str()); return 2; }
    }
    if (n_prompt < 1 || n_decode < 1 || uint32_t(n_prompt + n_decode) > s.n_ctx) { std::fprintf(stderr, "bad lengths\n"); return 2; }
    auto vf = GgufFile::open(vocab);
    if (!vf.ok()) { std::fprintf(stderr, "%s\n", vf.error().c_str()); return 1; }
    using clk = std::chrono::steady_clock;
    for (size_t pos = 0; pos < types.size();) {
        size_t end = types.find(',', pos);
        if (end == std::string::npos) end = types.size();
        const std::string t = types.substr(pos, end - pos);
        pos = end + 1;
        s.type = t == "q8_0" ? GgmlType::Q8_0 : t == "q4_0" ? GgmlType::Q4_0 : t == "f16" ? GgmlType::F16 : GgmlType::F32;
        GgufWriter w;
        if (Status st = make_tiny_llama(s, **vf, &w); !st.ok()) { std::fprintf(stderr, "%s\n", st.message().c_str()); return 1; }
        const std::vector<uint8_t> bytes = w.to_bytes();
        auto f = GgufFile::from_memory(bytes.data(), bytes.size());
        if (!f.ok()) { std::fprintf(stderr, "%s\n", f.error().c_str()); return 1; }
        ModelOptions mo;
        mo.n_threads = threads;
        auto m = Model::from_gguf(**f, mo);
        if (!m.ok()) { std::fprintf(stderr, "%s\n", m.error().c_str()); return 1; }
        const Model& model = **m;
        std::vector<int32_t> prompt(static_cast<size_t>(n_prompt));
        for (int i = 0; i < n_prompt; ++i) prompt[size_t(i)] = int32_t((i * 7919 + 13) % model.n_vocab());
        std::vector<float> logits(size_t(model.n_vocab()));
        auto kv = model.new_kv_cache(n_prompt + n_decode);
        const auto t0 = clk::now();
        if (Status st = model.forward(*kv, prompt.data(), n_prompt, 0, logits.data()); !st.ok()) { std::fprintf(stderr, "%s\n", st.message().c_str()); return 1; }
        const auto t1 = clk::now();
        int32_t tok = 1;
        for (int i = 0; i < n_decode; ++i) {
            tok = int32_t((tok * 31 + 7) % model.n_vocab());
            if (Status st = model.forward(*kv, &tok, 1, n_prompt + i, logits.data()); !st.ok()) { std::fprintf(stderr, "%s\n", st.message().c_str()); return 1; }
        }
        const auto t2 = clk::now();
        const double pre = std::chrono::duration<double>(t1 - t0).count(), dec = std::chrono::duration<double>(t2 - t1).count();
        std::printf("%-5s params=%.1fM threads=%d prefill %d tok: %.1f tok/s   decode %d tok: %.2f tok/s\n", t.c_str(),
                    double(model.n_params()) / 1e6, threads, n_prompt, n_prompt / pre, n_decode, n_decode / dec);
        std::fflush(stdout);
    }
    return 0;
}
