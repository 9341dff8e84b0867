// Byte-level BPE as llama.cpp's llm_tokenizer_bpe: pre-tokenize, map every byte of a
// pre-token to its GPT-2 code point, then repeatedly merge the adjacent pair with the
// lowest merge rank (leftmost on ties) and look the resulting pieces up.
#include "engine/tokenizer.hpp"
#include "engine/tokenizer_merge.hpp"

namespace reprise::engine {

int Tokenizer::bpe_rank(std::string_view left, std::string_view right) const {
    std::string key;
    key.reserve(left.size() + 1 + right.size());
    key.append(left).append(1, ' ').append(right);
    auto it = merge_rank_.find(key);
    return it == merge_rank_.end() ? -1 : it->second;
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<TokenId>& out) const {
    std::string word;
    std::vector<MergeSymbol> symbols;
    for (std::string_view pre : pretokenize(pre_, text)) {
        word.clear();
        for (char ch : pre) word += byte_to_unicode(static_cast<uint8_t>(ch));

        if (ignore_merges_) {
            if (const TokenId id = find(word); id != kNoToken) {
                out.push_back(id);
                continue;
            }
        }

        split_into_chars(word, symbols);
        merge_symbols(symbols, [&](std::string_view l, std::string_view r) -> std::optional<double> {
            const int rank = bpe_rank(l, r);
            if (rank < 0) return std::nullopt;
            return -double(rank);  // the lowest rank merges first
        });

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
