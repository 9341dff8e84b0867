#pragma once
// Stage 2 of the pipeline (DESIGN.md section 2): puts a batch in a canonical order so
// the index each request gets does not depend on arrival timing inside a window.
// Requests with an X-Reprise-Request-Id come first, in natural order ("req2" before
// "req10"); the rest keep their arrival order after them.
#include <string_view>
#include <vector>

#include "cache/cache_request.hpp"

namespace reprise::cache {

// Natural order: digit runs compare as numbers (leading zeros ignored, then fewer
// zeros first), everything else byte by byte. A strict weak order.
bool natural_less(std::string_view a, std::string_view b);

// The stage's one entry point.
void reorder(std::vector<PendingRequest>& batch);

}  // namespace reprise::cache
