#include "cache/glob.hpp"

namespace reprise {
namespace {

// Matches a [...] set at pattern[p] against c; returns the index after ']' or npos
// when the set is unterminated (then '[' is taken literally).
size_t match_set(std::string_view pattern, size_t p, char c, bool& matched) {
  size_t i = p + 1;
  bool negate = i < pattern.size() && (pattern[i] == '!' || pattern[i] == '^');
  if (negate) ++i;
  bool any = false;
  bool first = true;
  for (; i < pattern.size() && (first || pattern[i] != ']'); ++i, first = false) {
    if (i + 2 < pattern.size() && pattern[i + 1] == '-' && pattern[i + 2] != ']') {
      if (c >= pattern[i] && c <= pattern[i + 2]) any = true;
      i += 2;
    } else if (pattern[i] == c) {
      any = true;
    }
  }
  if (i >= pattern.size()) return std::string_view::npos;
  matched = any != negate;
  return i + 1;
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view text) {
  // Iterative matcher with single-star backtracking: linear for typical patterns,
  // never exponential.
  size_t p = 0, t = 0, star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size()) {
      char pc = pattern[p];
      if (pc == '*') { star_p = p++; star_t = t; continue; }
      if (pc == '?') { ++p; ++t; continue; }
      if (pc == '[') {
        bool matched = false;
        size_t next = match_set(pattern, p, text[t], matched);
        if (next != std::string_view::npos) {
          if (matched) { p = next; ++t; continue; }
        } else if (text[t] == '[') { ++p; ++t; continue; }
      } else if (pc == text[t]) { ++p; ++t; continue; }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p + 1;
    t = ++star_t;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace reprise
