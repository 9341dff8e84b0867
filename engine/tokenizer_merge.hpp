#pragma once
// The merge loop that SentencePiece and byte-level BPE share (llama.cpp's
// llm_tokenizer_spm and llm_tokenizer_bpe): the text, split into UTF-8 characters,
// becomes a linked list of symbols; adjacent pairs wait in a priority queue; the best
// pair is merged and the merged symbol's new neighbours are queued. The tokenizers
// differ only in what makes a pair best: the score of the token the pair makes
// (SentencePiece), or the rank of the merge (BPE, lower first).
#include <algorithm>
#include <optional>
#include <queue>
#include <string_view>
#include <vector>

#include "engine/unicode.hpp"

namespace reprise::engine {

struct MergeSymbol {
    int prev, next;   // neighbours in the list, -1 at its ends
    const char* text;
    size_t n;         // 0 once merged into its left neighbour
};

// One symbol per UTF-8 character of `text` (which must outlive the symbols).
inline void split_into_chars(std::string_view text, std::vector<MergeSymbol>& symbols) {
    symbols.clear();
    for (size_t offs = 0; offs < text.size();) {
        const size_t len = std::min(text.size() - offs, utf8_len(static_cast<uint8_t>(text[offs])));
        const int idx = static_cast<int>(symbols.size());
        symbols.push_back({idx - 1, offs + len == text.size() ? -1 : idx + 1, text.data() + offs, len});
        offs += len;
    }
}

// Merges until no pair qualifies. `priority(left, right)` is the pair's priority
// (higher merges first; the leftmost pair on ties), or nullopt when it never merges.
template <class Priority>
void merge_symbols(std::vector<MergeSymbol>& symbols, Priority&& priority) {
    struct Pair {
        int left, right;
        double priority;
        size_t size;  // the merged length: a pair queued before a side changed is stale
    };
    struct Worse {
        bool operator()(const Pair& a, const Pair& b) const {
            return a.priority < b.priority || (a.priority == b.priority && a.left > b.left);
        }
    };
    std::priority_queue<Pair, std::vector<Pair>, Worse> queue;
    auto try_add = [&](int left, int right) {
        if (left == -1 || right == -1) return;
        const std::string_view l(symbols[left].text, symbols[left].n);
        const std::string_view r(symbols[right].text, symbols[right].n);
        if (const std::optional<double> p = priority(l, r)) queue.push({left, right, *p, l.size() + r.size()});
    };
    for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);
    while (!queue.empty()) {
        const Pair best = queue.top();
        queue.pop();
        MergeSymbol& l = symbols[best.left];
        MergeSymbol& r = symbols[best.right];
        if (l.n == 0 || r.n == 0 || l.n + r.n != best.size) continue;  // stale
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) symbols[r.next].prev = best.left;
        try_add(l.prev, best.left);
        try_add(best.left, l.next);
    }
}

}  // namespace reprise::engine
