#include "tokens.hpp"

namespace reprise::fake {

namespace {

enum class Class { space, letter, digit, other };

Class classify(unsigned char c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') return Class::space;
  // Bytes of multi-byte UTF-8 count as letters, so a piece never splits a code point
  // (the SSE chunks must stay valid UTF-8).
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return Class::letter;
  if (c >= '0' && c <= '9') return Class::digit;
  return Class::other;
}

// Calls on_token(end) for the end offset of each token (whitespace not included).
template <class F>
void scan(std::string_view text, F&& on_token) {
  size_t i = 0;
  while (i < text.size()) {
    Class c = classify(static_cast<unsigned char>(text[i]));
    if (c == Class::space) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    if (c != Class::other)
      while (j < text.size() && classify(static_cast<unsigned char>(text[j])) == c) ++j;
    on_token(j);
    i = j;
  }
}

}  // namespace

int64_t count_tokens(std::string_view text) {
  int64_t n = 0;
  scan(text, [&](size_t) { ++n; });
  return n;
}

std::vector<uint32_t> token_ends(std::string_view text) {
  std::vector<uint32_t> ends;
  scan(text, [&](size_t end) { ends.push_back(uint32_t(end)); });
  if (!ends.empty()) ends.back() = uint32_t(text.size());  // trailing whitespace rides along
  return ends;
}

}  // namespace reprise::fake
