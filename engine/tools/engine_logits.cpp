// engine_logits: the engine's logits along given token paths (teacher forcing), or its
// greedy continuations, for comparisons with llama.cpp (tests/engine/llamacpp/). One
// model load for many paths: each stdin line is one path.
//   engine_logits [--threads N] [--top K] MODEL.gguf < LINES
//       LINES: "N_PROMPT ID ID ...". The first N_PROMPT ids run as one batch (the prefill
//       path, logits for each of them), the others one at a time (the decode path).
//       Prints one line per id (the logits after it, predicting the next id):
//       "LOGSUMEXP ID:LOGIT ..." with the K (default 64) largest logits, largest first
//       (lowest id first among equal logits), logits exact (%.9g).
//   engine_logits [--threads N] --greedy N_TOKENS MODEL.gguf < LINES
//       LINES: prompt ids. Prints one line of N_TOKENS greedy ids per prompt (the prompt
//       as one batch, then one token at a time; argmax, lowest id on ties).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model.hpp"
#include "engine/sampler.hpp"

using namespace reprise::engine;

static bool check(const Status& s) {
    if (!s.ok()) std::fprintf(stderr, "%s\n", s.message().c_str());
    return s.ok();
}

int main(int argc, char** argv) {
    ModelOptions o;
    int greedy = 0, top = 64;
    std::vector<const char*> pos;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) o.n_threads = std::atoi(argv[++i]);
        else if (std::strcmp(argv[i], "--greedy") == 0 && i + 1 < argc) greedy = std::atoi(argv[++i]);
        else if (std::strcmp(argv[i], "--top") == 0 && i + 1 < argc) top = std::atoi(argv[++i]);
        else pos.push_back(argv[i]);
    }
    if (pos.size() != 1 || o.n_threads < 1 || top < 1) {
        std::fprintf(stderr,
                     "usage: engine_logits [--threads N] [--top K] MODEL.gguf < 'N_PROMPT ID...' lines\n"
                     "       engine_logits [--threads N] --greedy N_TOKENS MODEL.gguf < 'ID...' lines\n");
        return 2;
    }
    auto m = Model::load(pos[0], o);
    if (!m.ok()) { std::fprintf(stderr, "%s\n", m.error().c_str()); return 1; }
    const Model& model = **m;
    const size_t V = size_t(model.n_vocab());
    const size_t K = std::min(size_t(top), V);
    std::vector<int32_t> order(V);
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream ss(line);
        std::vector<int32_t> ids;
        int n_prompt = 0;
        if (!greedy && !(ss >> n_prompt)) continue;
        for (long long id; ss >> id;) ids.push_back(int32_t(id));
        const int n = int(ids.size());
        if (greedy) n_prompt = n;
        if (n_prompt < 1 || n_prompt > n) { std::fprintf(stderr, "bad line (N_PROMPT must be in 1..%d)\n", n); return 2; }
        auto kv = model.new_kv_cache(n + greedy);
        if (greedy) {
            std::vector<float> logits(V);
            if (!check(model.forward(*kv, ids.data(), n, 0, logits.data()))) return 1;
            std::string s;
            for (int i = 0; i < greedy; ++i) {
                const int32_t t = argmax(logits.data(), int(V));
                if (i) s += ' ';
                s += std::to_string(t);
                if (i + 1 < greedy && !check(model.forward(*kv, &t, 1, n + i, logits.data()))) return 1;
            }
            std::printf("%s\n", s.c_str());
            continue;
        }
        std::vector<float> logits(size_t(n) * V);
        if (!check(model.forward(*kv, ids.data(), n_prompt, 0, logits.data(), true))) return 1;
        for (int i = n_prompt; i < n; ++i)
            if (!check(model.forward(*kv, &ids[size_t(i)], 1, i, logits.data() + size_t(i) * V))) return 1;
        for (int i = 0; i < n; ++i) {
            const float* L = logits.data() + size_t(i) * V;
            const float mx = *std::max_element(L, L + V);
            double z = 0;
            for (size_t j = 0; j < V; ++j) z += std::exp(double(L[j]) - mx);
            std::iota(order.begin(), order.end(), 0);
            std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(K), order.end(),
                              [&](int32_t a, int32_t b) { return L[a] > L[b] || (L[a] == L[b] && a < b); });
            char buf[64];
            std::snprintf(buf, sizeof buf, "%.17g", double(mx) + std::log(z));
            std::string s = buf;
            for (size_t k = 0; k < K; ++k) {
                std::snprintf(buf, sizeof buf, " %d:%.9g", order[k], double(L[order[k]]));
                s += buf;
            }
            std::printf("%s\n", s.c_str());
        }
    }
    return 0;
}
