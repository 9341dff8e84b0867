#pragma once
// A GPT-like token estimate, for the simulated model's usage and stream pieces. Not a
// real tokenizer: a token is a run of letters, a run of digits, or any other single
// non-blank character, close enough in scale for short English and arithmetic text.
#include <cstdint>
#include <string_view>
#include <vector>

namespace reprise::fake {

int64_t count_tokens(std::string_view text);

// Where each token piece of `text` ends: piece k is text[ends[k-1], ends[k]). A piece
// carries the whitespace before it (and the last one the trailing whitespace too), so
// the pieces concatenate to the text and there is exactly one per counted token.
std::vector<uint32_t> token_ends(std::string_view text);

}  // namespace reprise::fake
