#pragma once
// Shell-style globs, used on model names by [[models]] routes and [[energy.models]]
// rules: * (any run), ? (one character), [abc] / [a-z] / [!a] (a set; an
// unterminated '[' is literal). Linear for typical patterns, never exponential.
#include <string_view>

namespace reprise {

bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace reprise
