// Byte-level BPE as llama.cpp's llm_tokenizer_bpe: pre-tokenize, map every byte of a
// pre-token to its GPT-2 code point, then repeatedly merge the adjacent pair with the
// lowest merge rank (leftmost on ties) and look the resulting pieces up.
#include <queue>

#include "engine/tokenizer.hpp"

namespace reprise::engine {

namespace {

struct Symbol {
    int prev, next;
    const char* text;
    size_t n;
};

struct Bigram {
    int left, right;
    int rank;
    size_t size;
};
struct BigramLater {  // priority: lowest rank first, then the leftmost
    bool operator()(const Bigram& l, const Bigram& r) const {
        return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
    }
};

}  // namespace

int Tokenizer::bpe_rank(std::string_view left, std::string_view right) const {
    std::string key;
    key.reserve(left.size() + 1 + right.size());
    key.append(left).append(1, ' ').append(right);
    auto it = merge_rank_.find(key);
    return it == merge_rank_.end() ? -1 : it->second;
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<TokenId>& out) const {
    std::string word;
    std::vector<Symbol> symbols;
    for (std::string_view pre : pretokenize(pre_, text)) {
        word.clear();
        for (char ch : pre) word += byte_to_unicode(static_cast<uint8_t>(ch));

        if (ignore_merges_) {
            if (const TokenId id = find(word); id != kNoToken) {
                out.push_back(id);
                continue;
            }
        }

        symbols.clear();
        for (size_t offs = 0; offs < word.size();) {
            const size_t len = std::min(word.size() - offs, utf8_len(static_cast<uint8_t>(word[offs])));
            const int idx = static_cast<int>(symbols.size());
            symbols.push_back({idx - 1, offs + len == word.size() ? -1 : idx + 1, word.data() + offs, len});
            offs += len;
        }

        std::priority_queue<Bigram, std::vector<Bigram>, BigramLater> queue;
        auto try_add = [&](int left, int right) {
            if (left == -1 || right == -1) return;
            const std::string_view l(symbols[left].text, symbols[left].n);
            const std::string_view r(symbols[right].text, symbols[right].n);
            const int rank = bpe_rank(l, r);
            if (rank < 0) return;
            queue.push({left, right, rank, l.size() + r.size()});
        };
        for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

        while (!queue.empty()) {
            const Bigram b = queue.top();
            queue.pop();
            Symbol& l = symbols[b.left];
            Symbol& r = symbols[b.right];
            if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // stale
            l.n += r.n;
            r.n = 0;
            l.next = r.next;
            if (r.next >= 0) symbols[r.next].prev = b.left;
            try_add(l.prev, b.left);
            try_add(b.left, l.next);
        }

        for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
            const std::string_view s(symbols[i].text, symbols[i].n);
            if (const TokenId id = find(s); id != kNoToken) {
                out.push_back(id);
                continue;
            }
            // A piece the vocabulary lacks (a merge whose result is not a token):
            // emit its code points one by one, unk for any that is missing.
            for (size_t p = 0; p < s.size();) {
                size_t len;
                utf8_decode(s, p, &len);
                const TokenId id = find(s.substr(p, len));
                if (id != kNoToken) out.push_back(id);
                else if (unk_ != kNoToken) out.push_back(unk_);
                p += len;
            }
        }
    }
}

}  // namespace reprise::engine
