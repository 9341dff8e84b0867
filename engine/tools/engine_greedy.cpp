// engine_greedy: greedy continuation of a token-id prompt, one id per line of output
// (for comparisons with llama.cpp, tests/engine/llamacpp/).
//   engine_greedy MODEL.gguf N_TOKENS ID [ID...]   [env REPRISE_QUANTIZE=q8_0|q4_0]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/model.hpp"
#include "engine/sampler.hpp"

using namespace reprise::engine;

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: engine_greedy MODEL.gguf N_TOKENS ID [ID...]\n");
        return 2;
    }
    ModelOptions o;
    if (const char* q = std::getenv("REPRISE_QUANTIZE"))
        o.quantize = std::strcmp(q, "q8_0") == 0 ? GgmlType::Q8_0 : std::strcmp(q, "q4_0") == 0 ? GgmlType::Q4_0 : GgmlType::F32;
    auto m = Model::load(argv[1], o);
    if (!m.ok()) { std::fprintf(stderr, "%s\n", m.error().c_str()); return 1; }
    const int n = std::atoi(argv[2]);
    std::vector<int32_t> prompt;
    for (int i = 3; i < argc; ++i) prompt.push_back(int32_t(std::atoi(argv[i])));
    auto kv = (*m)->new_kv_cache(int(prompt.size()) + n);
    std::vector<float> logits(size_t((*m)->n_vocab()));
    if (Status s = (*m)->forward(*kv, prompt.data(), int(prompt.size()), 0, logits.data()); !s.ok()) { std::fprintf(stderr, "%s\n", s.message().c_str()); return 1; }
    for (int i = 0; i < n; ++i) {
        const int32_t t = argmax(logits.data(), (*m)->n_vocab());
        std::printf("%d\n", t);
        if (std::getenv("REPRISE_MARGIN")) {  // top-1 minus top-2 logit, to spot near-ties
            float second = -1e30f;
            for (int j = 0; j < (*m)->n_vocab(); ++j)
                if (j != t && logits[size_t(j)] > second) second = logits[size_t(j)];
            std::fprintf(stderr, "step %d token %d margin %.5f\n", i, t, logits[size_t(t)] - second);
        }
        if (i + 1 < n)
            if (Status s = (*m)->forward(*kv, &t, 1, int(prompt.size()) + i, logits.data()); !s.ok()) { std::fprintf(stderr, "%s\n", s.message().c_str()); return 1; }
    }
    return 0;
}
