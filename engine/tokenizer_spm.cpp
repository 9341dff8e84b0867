// SentencePiece-style tokenization as llama.cpp's llm_tokenizer_spm: start from single
// UTF-8 characters, repeatedly merge the adjacent pair whose concatenation is the
// highest-scoring token (leftmost on ties), then map pieces to ids, falling back to byte tokens
// <0xXX> for characters the vocabulary lacks.
#include <queue>

#include "engine/tokenizer.hpp"

namespace reprise::engine {

namespace {

struct Symbol {
    int prev, next;
    const char* text;
    size_t n;  // 0 once merged into its left neighbour
};

struct Bigram {
    int left, right;
    float score;
    size_t size;
};
struct BigramLess {  // priority: higher score first, then the leftmost
    bool operator()(const Bigram& l, const Bigram& r) const {
        return l.score < r.score || (l.score == r.score && l.left > r.left);
    }
};

}  // namespace

void Tokenizer::encode_spm(std::string_view raw, std::vector<TokenId>& out) const {
    // Spaces become U+2581 ("▁").
    std::string text;
    text.reserve(raw.size() + 16);
    for (char ch : raw) {
        if (ch == ' ') text += "\xe2\x96\x81";
        else text += ch;
    }

    std::vector<Symbol> symbols;
    for (size_t offs = 0; offs < text.size();) {
        const size_t len = std::min(text.size() - offs, utf8_len(static_cast<uint8_t>(text[offs])));
        const int idx = static_cast<int>(symbols.size());
        symbols.push_back({idx - 1, offs + len == text.size() ? -1 : idx + 1, text.data() + offs, len});
        offs += len;
    }

    std::priority_queue<Bigram, std::vector<Bigram>, BigramLess> queue;
    auto try_add = [&](int left, int right) {
        if (left == -1 || right == -1) return;
        const std::string_view s(symbols[left].text, symbols[left].n + symbols[right].n);
        const TokenId id = find(s);
        if (id == kNoToken) return;
        queue.push({left, right, tokens_[static_cast<size_t>(id)].score, s.size()});
    };

    for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Symbol& l = symbols[b.left];
        Symbol& r = symbols[b.right];
        // Stale entry: one side was merged since it was queued.
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) symbols[r.next].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }

    // Map each final symbol to an id. A merged symbol is a token by construction; a
    // single character the vocabulary lacks falls back to byte tokens. (llama.cpp's
    // resegment() also consults the merge history, but only for texts that are not
    // tokens, which after this loop are single characters that no merge produced.)
    for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
        const std::string_view s(symbols[i].text, symbols[i].n);
        if (const TokenId id = find(s); id != kNoToken) {
            out.push_back(id);
            continue;
        }
        for (char ch : s) {
            const TokenId bt = byte_to_token(static_cast<uint8_t>(ch));
            if (bt != kNoToken) out.push_back(bt);
        }
    }
}

}  // namespace reprise::engine
