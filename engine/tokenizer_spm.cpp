// SentencePiece-style tokenization as llama.cpp's llm_tokenizer_spm: start from single
// UTF-8 characters, repeatedly merge the adjacent pair whose concatenation is the
// highest-scoring token (leftmost on ties), then map pieces to ids, falling back to byte tokens
// <0xXX> for characters the vocabulary lacks.
#include "engine/tokenizer.hpp"
#include "engine/tokenizer_merge.hpp"

namespace reprise::engine {

void Tokenizer::encode_spm(std::string_view raw, std::vector<TokenId>& out) const {
    // Spaces become U+2581 ("▁").
    std::string text;
    text.reserve(raw.size() + 16);
    for (char ch : raw) {
        if (ch == ' ') text += "\xe2\x96\x81";
        else text += ch;
    }

    std::vector<MergeSymbol> symbols;
    split_into_chars(text, symbols);
    merge_symbols(symbols, [&](std::string_view l, std::string_view r) -> std::optional<double> {
        // The pair merges when the concatenation (adjacent in `text`) is a token.
        const TokenId id = find(std::string_view(l.data(), l.size() + r.size()));
        if (id == kNoToken) return std::nullopt;
        return tokens_[static_cast<size_t>(id)].score;
    });

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
