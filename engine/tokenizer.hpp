#pragma once
// Tokenizers built from a GGUF vocabulary (tokenizer.ggml.*), matching llama.cpp's
// llama-vocab.cpp: SentencePiece-style "llama" (score-ordered bigram merges, byte
// fallback) and byte-level BPE "gpt2" (pre-tokenizer per tokenizer.ggml.pre, merges by
// rank). The Tokenizer copies what it needs, so the GgufFile may be closed afterwards.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/gguf.hpp"
#include "engine/status.hpp"
#include "engine/unicode.hpp"

namespace reprise::engine {

using TokenId = int32_t;
constexpr TokenId kNoToken = -1;

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

enum class VocabKind { Spm, Bpe };

// unordered_map<std::string> lookups by string_view without building a string.
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

class Tokenizer {
public:
    static Result<std::unique_ptr<Tokenizer>> from_gguf(const GgufFile& f);

    // add_special: BOS/EOS as the vocabulary's add_bos/add_eos flags say.
    // parse_special: control tokens written in the text (e.g. "<|endoftext|>") become
    // their ids; user-defined tokens are always matched, as in llama.cpp.
    std::vector<TokenId> encode(std::string_view text, bool add_special, bool parse_special = false) const;
    // remove_special drops a leading BOS / trailing EOS; the SentencePiece prefix space
    // is removed from the first piece. Control tokens print only if unparse_special.
    std::string decode(const std::vector<TokenId>& ids, bool remove_special = false, bool unparse_special = false) const;
    // The bytes one token stands for (no prefix-space removal).
    std::string token_to_piece(TokenId id, bool unparse_special = false) const;

    VocabKind kind() const { return kind_; }
    size_t n_vocab() const { return tokens_.size(); }
    const std::string& token_text(TokenId id) const { return tokens_[static_cast<size_t>(id)].text; }
    TokenType token_type(TokenId id) const { return tokens_[static_cast<size_t>(id)].type; }
    TokenId find(std::string_view text) const;  // kNoToken if absent
    TokenId bos() const { return bos_; }
    TokenId eos() const { return eos_; }
    TokenId unk() const { return unk_; }
    TokenId pad() const { return pad_; }
    bool add_bos() const { return add_bos_; }
    bool add_eos() const { return add_eos_; }

private:
    struct Token {
        std::string text;
        float score = 0.0f;
        TokenType type = TokenType::Normal;
    };
    Tokenizer() = default;
    Status load(const GgufFile& f);
    bool valid(TokenId id) const { return id >= 0 && static_cast<size_t>(id) < tokens_.size(); }
    TokenId byte_to_token(uint8_t b) const;
    void encode_spm(std::string_view text, std::vector<TokenId>& out) const;  // tokenizer_spm.cpp
    void encode_bpe(std::string_view text, std::vector<TokenId>& out) const;  // tokenizer_bpe.cpp
    int bpe_rank(std::string_view left, std::string_view right) const;

    VocabKind kind_ = VocabKind::Spm;
    PreTokenizer pre_ = PreTokenizer::Gpt2;
    bool ignore_merges_ = false;   // llama3: a pre-token that is a whole token skips merging
    bool add_space_prefix_ = true; // SPM: " " before the text
    bool add_bos_ = false, add_eos_ = false;
    TokenId bos_ = kNoToken, eos_ = kNoToken, unk_ = kNoToken, pad_ = kNoToken;
    std::vector<Token> tokens_;
    StringMap<TokenId> token_to_id_;
    StringMap<int> merge_rank_;  // "left right" -> rank
    std::vector<TokenId> special_;  // control/user-defined/unknown, longest text first
};

}  // namespace reprise::engine
