#include "cache/reorderer.hpp"

#include <algorithm>

namespace reprise::cache {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Compares the digit runs a[i..) and b[j..) as numbers and advances past them.
// Returns <0, 0, >0; `zeros` records which run had more leading zeros (a tiebreak
// so that "01" and "1" are not equal: an order must be strict for distinct ids).
int compare_numbers(std::string_view a, size_t& i, std::string_view b, size_t& j, int& zeros) {
  size_t za = 0, zb = 0;
  while (i < a.size() && a[i] == '0' && i + 1 < a.size() && is_digit(a[i + 1])) ++i, ++za;
  while (j < b.size() && b[j] == '0' && j + 1 < b.size() && is_digit(b[j + 1])) ++j, ++zb;
  size_t ea = i, eb = j;
  while (ea < a.size() && is_digit(a[ea])) ++ea;
  while (eb < b.size() && is_digit(b[eb])) ++eb;
  int result = 0;
  if (ea - i != eb - j) {
    result = ea - i < eb - j ? -1 : 1;  // more significant digits: bigger
  } else {
    result = a.substr(i, ea - i).compare(b.substr(j, eb - j));
  }
  if (zeros == 0 && za != zb) zeros = za < zb ? -1 : 1;
  i = ea;
  j = eb;
  return result;
}

}  // namespace

bool natural_less(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  int zeros = 0;
  while (i < a.size() && j < b.size()) {
    if (is_digit(a[i]) && is_digit(b[j])) {
      int c = compare_numbers(a, i, b, j, zeros);
      if (c != 0) return c < 0;
      continue;
    }
    if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
    ++i, ++j;
  }
  if (i < a.size() || j < b.size()) return j < b.size();  // a prefix of the other
  return zeros < 0;
}

void reorder(std::vector<PendingRequest>& batch) {
  // Stable: equal ids (and all requests without one) keep arrival order.
  std::stable_sort(batch.begin(), batch.end(), [](const PendingRequest& x, const PendingRequest& y) {
    const auto& a = x.request.request_id;
    const auto& b = y.request.request_id;
    if (a.empty() || b.empty()) return !a.empty() && b.empty();
    return natural_less(a, b);
  });
}

}  // namespace reprise::cache
