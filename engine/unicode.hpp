#pragma once
// The Unicode pieces the tokenizers need: UTF-8 decoding, \p{L} / \p{N} / \s code point
// classes (a generated range table, see tools/gen_unicode_data.py), GPT-2's byte <->
// code point mapping, and the BPE pre-tokenizers written as scanners over code points.
//
// Why hand-written scanners: std::regex has no \p{L} and works on bytes; llama.cpp does
// the same (unicode.cpp, unicode_regex_split_custom_*). A 780-range table is enough
// and keeps the engine free of ICU.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace reprise::engine {

struct CptRange {
    uint32_t first, last;
    uint8_t flags;
};
namespace unicode_data {
extern const CptRange kRanges[];
extern const size_t kRangeCount;
}  // namespace unicode_data

enum CptFlag : uint8_t { kCptLetter = 1, kCptNumber = 2, kCptWhitespace = 4 };
uint8_t cpt_flags(uint32_t cp);

// Length of the UTF-8 sequence a lead byte announces, as llama.cpp counts it (a stray
// continuation byte counts as 1).
size_t utf8_len(uint8_t lead);

// Decodes one code point at s[pos]; invalid or truncated sequences give U+FFFD over 1 byte.
uint32_t utf8_decode(std::string_view s, size_t pos, size_t* len);
void utf8_append(std::string& out, uint32_t cp);

// GPT-2 byte-level BPE: each byte maps to one printable code point.
const std::string& byte_to_unicode(uint8_t b);  // its UTF-8
int unicode_to_byte(uint32_t cp);               // -1 when cp is not in the mapping

enum class PreTokenizer { Gpt2, Llama3, Qwen2 };

// Splits text into pre-tokens, as the named regex would, returning views into text.
// gpt-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//         ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// qwen2:  llama3 with \p{N} (single digits)
std::vector<std::string_view> pretokenize(PreTokenizer kind, std::string_view text);

}  // namespace reprise::engine
