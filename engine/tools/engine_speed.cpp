// engine_speed: prefill and decode tokens/s of the engine on a GGUF file, for the
// comparison with llama.cpp on the same file (bench/engine/run.mjs).
//   engine_speed MODEL.gguf [--threads 1] [--prompt 128] [--decode 64] [--rounds 1]
//       [--isa avx512vnni|avx2|scalar]
// The prompt is the ids (i * 7919 + 13) mod n_vocab, run as one batch (logits of the
// last token only); decode then runs greedy, one token at a time, n_decode tokens. One
// short untimed warm-up pass first (16 tokens + 4 decode steps: page faults, thread
// start). --isa caps the kernels at that path (kernels_set_max_isa; default: the CPU's
// best, scalar: the scalar references everywhere, F32 included). First line: "isa P",
// the path that ran (the cap, or less on a CPU without it); then one line per round:
// "round R prefill_tok_s X decode_tok_s Y".
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/kernels/cpu.hpp"
#include "engine/model.hpp"
#include "engine/sampler.hpp"

using namespace reprise::engine;
using clk = std::chrono::steady_clock;

static bool pass(const Model& m, int n_prompt, int n_decode, double* prefill_s, double* decode_s) {
    std::vector<int32_t> prompt(static_cast<size_t>(n_prompt));
    for (int i = 0; i < n_prompt; ++i) prompt[size_t(i)] = int32_t((int64_t(i) * 7919 + 13) % m.n_vocab());
    std::vector<float> logits(size_t(m.n_vocab()));
    auto kv = m.new_kv_cache(n_prompt + n_decode);
    const auto t0 = clk::now();
    if (Status s = m.forward(*kv, prompt.data(), n_prompt, 0, logits.data()); !s.ok()) { std::fprintf(stderr, "%s\n", s.message().c_str()); return false; }
    const auto t1 = clk::now();
    for (int i = 0; i < n_decode; ++i) {
        const int32_t t = argmax(logits.data(), m.n_vocab());
        if (Status s = m.forward(*kv, &t, 1, n_prompt + i, logits.data()); !s.ok()) { std::fprintf(stderr, "%s\n", s.message().c_str()); return false; }
    }
    const auto t2 = clk::now();
    *prefill_s = std::chrono::duration<double>(t1 - t0).count();
    *decode_s = std::chrono::duration<double>(t2 - t1).count();
    return true;
}

static const char* isa_name(KernelIsa isa) {
    switch (isa) {
        case KernelIsa::Avx512Vnni: return "avx512vnni";
        case KernelIsa::Avx2: return "avx2";
        case KernelIsa::Scalar: break;
    }
    return "scalar";
}

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: engine_speed MODEL.gguf [--threads N] [--prompt N] [--decode N] [--rounds N] [--isa avx512vnni|avx2|scalar]\n");
        return 2;
    }
    ModelOptions o;
    int n_prompt = 128, n_decode = 64, rounds = 1;
    for (int i = 2; i + 1 < argc; i += 2) {
        const int v = std::atoi(argv[i + 1]);
        if (std::strcmp(argv[i], "--isa") == 0) {
            const std::string isa = argv[i + 1];
            if (isa == "avx512vnni") kernels_set_max_isa(KernelIsa::Avx512Vnni);
            else if (isa == "avx2") kernels_set_max_isa(KernelIsa::Avx2);
            else if (isa == "scalar") { kernels_set_max_isa(KernelIsa::Scalar); kernels_force_scalar(true); }
            else { std::fprintf(stderr, "unknown --isa %s (avx512vnni, avx2 or scalar)\n", argv[i + 1]); return 2; }
        } else if (std::strcmp(argv[i], "--threads") == 0) o.n_threads = v;
        else if (std::strcmp(argv[i], "--prompt") == 0) n_prompt = v;
        else if (std::strcmp(argv[i], "--decode") == 0) n_decode = v;
        else if (std::strcmp(argv[i], "--rounds") == 0) rounds = v;
        else { std::fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (n_prompt < 1 || n_decode < 1 || rounds < 1 || o.n_threads < 1) { std::fprintf(stderr, "bad arguments\n"); return 2; }
    auto m = Model::load(argv[1], o);
    if (!m.ok()) { std::fprintf(stderr, "%s\n", m.error().c_str()); return 1; }
    std::printf("isa %s\n", isa_name(kernels_isa()));
    double p, d;
    if (!pass(**m, 16, 4, &p, &d)) return 1;
    for (int r = 0; r < rounds; ++r) {
        if (!pass(**m, n_prompt, n_decode, &p, &d)) return 1;
        std::printf("round %d prefill_tok_s %.3f decode_tok_s %.3f\n", r, n_prompt / p, n_decode / d);
        std::fflush(stdout);
    }
    return 0;
}
