#include "engine/tokenizer.hpp"

#include <algorithm>
#include <cstdio>

namespace reprise::engine {

namespace {

Status tok_error(const std::string& msg) { return Status::error("tokenizer: " + msg); }

// An optional key: absent is fine, present with the wrong type is an error.
Status opt_bool(const GgufFile& f, std::string_view key, bool* out) {
    return f.find(key) ? f.get_bool(key, out) : Status();
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_gguf(const GgufFile& f) {
    std::unique_ptr<Tokenizer> t(new Tokenizer());
    if (Status s = t->load(f); !s.ok()) return s;
    return t;
}

Status Tokenizer::load(const GgufFile& f) {
    std::string_view model;
    if (Status s = f.get_string("tokenizer.ggml.model", &model); !s.ok()) return tok_error(s.message());
    if (model == "llama") {
        kind_ = VocabKind::Spm;
    } else if (model == "gpt2") {
        kind_ = VocabKind::Bpe;
    } else {
        return tok_error("unsupported tokenizer.ggml.model '" + std::string(model) + "' (supported: llama, gpt2)");
    }

    const GgufKV* toks = nullptr;
    if (Status s = f.get_array("tokenizer.ggml.tokens", GgufType::STRING, &toks); !s.ok()) return tok_error(s.message());
    if (toks->arr_n == 0) return tok_error("tokenizer.ggml.tokens is empty");
    if (toks->arr_n > static_cast<uint64_t>(INT32_MAX)) return tok_error("tokenizer.ggml.tokens is too large");
    const size_t n = static_cast<size_t>(toks->arr_n);

    const GgufKV* scores = nullptr;
    if (f.find("tokenizer.ggml.scores")) {
        if (Status s = f.get_array("tokenizer.ggml.scores", GgufType::FLOAT32, &scores); !s.ok()) return tok_error(s.message());
        if (scores->arr_n != n)
            return tok_error("tokenizer.ggml.scores has " + std::to_string(scores->arr_n) + " entries for " + std::to_string(n) + " tokens");
    }
    const GgufKV* types = nullptr;
    if (f.find("tokenizer.ggml.token_type")) {
        if (Status s = f.get_array("tokenizer.ggml.token_type", GgufType::INT32, &types); !s.ok()) return tok_error(s.message());
        if (types->arr_n != n)
            return tok_error("tokenizer.ggml.token_type has " + std::to_string(types->arr_n) + " entries for " + std::to_string(n) + " tokens");
    }

    tokens_.resize(n);
    token_to_id_.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        Token& tk = tokens_[i];
        tk.text = std::string(toks->strs[i]);
        if (scores) tk.score = static_cast<float>(scores->float_at(i));
        if (types) {
            const int64_t ty = types->int_at(i);
            tk.type = (ty >= 0 && ty <= 6) ? static_cast<TokenType>(ty) : TokenType::Undefined;
        }
        token_to_id_[tk.text] = static_cast<TokenId>(i);  // later duplicates win, as in llama.cpp
    }

    // Special ids: defaults as llama.cpp's, then the file's; an id outside the vocabulary
    // is ignored (llama.cpp warns and does the same).
    if (kind_ == VocabKind::Spm) {
        bos_ = 1, eos_ = 2, unk_ = 0;
        add_bos_ = true, add_space_prefix_ = true;
    } else {
        add_space_prefix_ = false;
    }
    struct { const char* key; TokenId* id; } ids[] = {
        {"tokenizer.ggml.bos_token_id", &bos_}, {"tokenizer.ggml.eos_token_id", &eos_},
        {"tokenizer.ggml.unknown_token_id", &unk_}, {"tokenizer.ggml.padding_token_id", &pad_}};
    for (auto& [key, id] : ids) {
        if (!f.find(key)) continue;
        uint32_t v;
        if (Status s = f.get_u32(key, &v); !s.ok()) return tok_error(s.message());
        *id = v < n ? static_cast<TokenId>(v) : kNoToken;
    }
    if (!valid(bos_)) bos_ = kNoToken;
    if (!valid(eos_)) eos_ = kNoToken;
    if (!valid(unk_)) unk_ = kNoToken;

    if (kind_ == VocabKind::Bpe) {
        std::string_view pre = "default";
        if (f.find("tokenizer.ggml.pre"))
            if (Status s = f.get_string("tokenizer.ggml.pre", &pre); !s.ok()) return tok_error(s.message());
        if (pre == "gpt-2" || pre == "gpt2") {
            pre_ = PreTokenizer::Gpt2;
        } else if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe") {
            pre_ = PreTokenizer::Llama3;
            ignore_merges_ = true;
            add_bos_ = true;
        } else if (pre == "qwen2") {
            pre_ = PreTokenizer::Qwen2;
        } else {
            return tok_error("unsupported tokenizer.ggml.pre '" + std::string(pre) + "' (supported: gpt-2, llama-bpe/llama3, qwen2)");
        }
        const GgufKV* merges = nullptr;
        if (Status s = f.get_array("tokenizer.ggml.merges", GgufType::STRING, &merges); !s.ok()) return tok_error(s.message());
        merge_rank_.reserve(static_cast<size_t>(merges->arr_n));
        for (uint64_t i = 0; i < merges->arr_n; ++i) {
            const std::string_view m = merges->strs[i];
            // "left right"; the separator is searched from 1 as llama.cpp does.
            const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string_view::npos;
            if (sp == std::string_view::npos)
                return tok_error("tokenizer.ggml.merges[" + std::to_string(i) + "] has no space separator");
            merge_rank_.emplace(std::string(m), static_cast<int>(i));  // first occurrence keeps its rank
        }
    }
    if (Status s = opt_bool(f, "tokenizer.ggml.add_bos_token", &add_bos_); !s.ok()) return tok_error(s.message());
    if (Status s = opt_bool(f, "tokenizer.ggml.add_eos_token", &add_eos_); !s.ok()) return tok_error(s.message());
    if (Status s = opt_bool(f, "tokenizer.ggml.add_space_prefix", &add_space_prefix_); !s.ok()) return tok_error(s.message());

    for (size_t i = 0; i < n; ++i) {
        const TokenType ty = tokens_[i].type;
        if ((ty == TokenType::Control || ty == TokenType::UserDefined || ty == TokenType::Unknown) && !tokens_[i].text.empty())
            special_.push_back(static_cast<TokenId>(i));
    }
    std::stable_sort(special_.begin(), special_.end(), [&](TokenId a, TokenId b) {
        return tokens_[a].text.size() > tokens_[b].text.size();
    });
    return Status();
}

TokenId Tokenizer::find(std::string_view text) const {
    auto it = token_to_id_.find(text);
    return it == token_to_id_.end() ? kNoToken : it->second;
}

TokenId Tokenizer::byte_to_token(uint8_t b) const {
    TokenId id;
    if (kind_ == VocabKind::Spm) {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
        id = find(buf);
        if (id == kNoToken) id = find(std::string_view(reinterpret_cast<const char*>(&b), 1));
    } else {
        id = find(byte_to_unicode(b));
    }
    return id == kNoToken ? unk_ : id;
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    std::vector<TokenId> out;
    if (add_special && add_bos_ && bos_ != kNoToken) out.push_back(bos_);

    // Cut the text at special tokens (longest first), as llama.cpp's
    // tokenizer_st_partition: control and unknown tokens only when parse_special.
    struct Frag {
        TokenId id;  // kNoToken: raw text
        std::string_view text;
    };
    std::vector<Frag> frags;
    if (!text.empty()) frags.push_back({kNoToken, text});
    for (TokenId sid : special_) {
        const Token& tk = tokens_[static_cast<size_t>(sid)];
        if (!parse_special && (tk.type == TokenType::Control || tk.type == TokenType::Unknown)) continue;
        std::vector<Frag> next;
        next.reserve(frags.size());
        for (const Frag& fr : frags) {
            if (fr.id != kNoToken) {
                next.push_back(fr);
                continue;
            }
            std::string_view rest = fr.text;
            for (size_t p; (p = rest.find(tk.text)) != std::string_view::npos;) {
                if (p > 0) next.push_back({kNoToken, rest.substr(0, p)});
                next.push_back({sid, {}});
                rest.remove_prefix(p + tk.text.size());
            }
            if (!rest.empty()) next.push_back({kNoToken, rest});
        }
        frags.swap(next);
    }

    bool prev_special = true;  // SPM: the prefix space goes at the start and after specials
    for (const Frag& fr : frags) {
        if (fr.id != kNoToken) {
            out.push_back(fr.id);
            prev_special = true;
            continue;
        }
        if (kind_ == VocabKind::Spm) {
            std::string s;
            if (add_space_prefix_ && prev_special) s = " ";
            s.append(fr.text);
            encode_spm(s, out);
        } else {
            encode_bpe(fr.text, out);
        }
        prev_special = false;
    }
    if (add_special && add_eos_ && eos_ != kNoToken) out.push_back(eos_);
    return out;
}

std::string Tokenizer::token_to_piece(TokenId id, bool unparse_special) const {
    if (!valid(id)) return {};
    const Token& tk = tokens_[static_cast<size_t>(id)];
    switch (tk.type) {
        case TokenType::Control: return unparse_special ? tk.text : std::string();
        case TokenType::UserDefined: return tk.text;
        case TokenType::Unknown:
            if (unparse_special) return tk.text;
            return kind_ == VocabKind::Spm ? "\xe2\x96\x85" : "";  // llama.cpp prints U+2585
        case TokenType::Byte:
            if (kind_ == VocabKind::Spm) {
                unsigned v;
                if (tk.text.size() == 6 && std::sscanf(tk.text.c_str(), "<0x%2x>", &v) == 1) return std::string(1, static_cast<char>(v));
                return tk.text;
            }
            break;
        default: break;
    }
    std::string out;
    if (kind_ == VocabKind::Spm) {
        // U+2581 (LOWER ONE EIGHTH BLOCK) stands for a space.
        const std::string_view t = tk.text;
        for (size_t i = 0; i < t.size();) {
            if (t.compare(i, 3, "\xe2\x96\x81") == 0) {
                out += ' ';
                i += 3;
            } else {
                out += t[i++];
            }
        }
    } else {
        const std::string_view t = tk.text;
        for (size_t i = 0; i < t.size();) {
            size_t len;
            const uint32_t cp = utf8_decode(t, i, &len);
            const int b = unicode_to_byte(cp);
            if (b >= 0) out += static_cast<char>(b);
            else out.append(t.substr(i, len));  // not a byte-level code point: keep as is
            i += len;
        }
    }
    return out;
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids, bool remove_special, bool unparse_special) const {
    size_t b = 0, e = ids.size();
    bool strip_space = kind_ == VocabKind::Spm && add_space_prefix_;
    if (remove_special && add_bos_ && e > b && ids[b] == bos_) {
        ++b;
        strip_space = false;  // as llama.cpp's detokenize
    }
    if (remove_special && add_eos_ && e > b && ids[e - 1] == eos_) --e;
    std::string out;
    for (size_t i = b; i < e; ++i) {
        std::string piece = token_to_piece(ids[i], unparse_special);
        if (strip_space && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
        strip_space = false;
        out += piece;
    }
    return out;
}

}  // namespace reprise::engine
