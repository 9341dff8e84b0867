#include "game24_math.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <map>

namespace reprise::fake::game24 {

bool near(double a, double b) { return std::abs(a - b) < 1e-6; }

bool is_integer(double x) { return std::abs(x - std::round(x)) < 1e-9; }

std::string format_number(double x) {
  if (!std::isfinite(x)) return "0";
  if (is_integer(x) && std::abs(x) < 1e15) return std::to_string(static_cast<long long>(std::llround(x)));
  char buf[64];
  std::snprintf(buf, sizeof buf, std::abs(x) < 1e15 ? "%.2f" : "%.6g", x);
  std::string s = buf;
  if (s.find('.') != std::string::npos && s.find('e') == std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s == "-0" ? "0" : s;
}

std::optional<std::vector<double>> parse_numbers(std::string_view text) {
  std::vector<double> out;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ' ' || text[i] == '\t') {
      ++i;
      continue;
    }
    size_t end = text.find_first_of(" \t", i);
    if (end == std::string_view::npos) end = text.size();
    double x = 0;
    auto [ptr, ec] = std::from_chars(text.data() + i, text.data() + end, x);
    if (ec != std::errc{} || ptr != text.data() + end || !std::isfinite(x)) return std::nullopt;
    out.push_back(x);
    i = end;
  }
  return out;
}

std::optional<double> apply(double a, char op, double b) {
  switch (op) {
    case '+': return a + b;
    case '-': return a - b;
    case '*': return a * b;
    case '/': return b == 0 ? std::nullopt : std::optional<double>(a / b);
  }
  return std::nullopt;
}

std::string step_line(const Step& s, std::vector<double> rest) {
  rest.push_back(s.c);
  std::sort(rest.begin(), rest.end());
  std::string line = format_number(s.a);
  line += ' ';
  line += s.op;
  line += ' ';
  line += format_number(s.b);
  line += " = ";
  line += format_number(s.c);
  line += " (left:";
  for (double x : rest) {
    line += ' ';
    line += format_number(x);
  }
  line += ')';
  return line;
}

namespace {

constexpr size_t kMaxNumbers = 4;

// Depth-first over every pair and operation, without allocating: `visit` sees each
// chain that reaches 24 and returns false to stop. False when stopped.
template <class Visit>
bool search(const double* numbers, size_t n, Step* path, size_t depth, Visit& visit) {
  if (n == 1) return !near(numbers[0], 24) || visit(path, depth);
  double next[kMaxNumbers];
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j) {
      size_t m = 0;
      for (size_t k = 0; k < n; ++k)
        if (k != i && k != j) next[m++] = numbers[k];
      const double a = numbers[i], b = numbers[j];
      const Step moves[] = {{a, '+', b, 0}, {a, '*', b, 0}, {a, '-', b, 0},
                            {b, '-', a, 0}, {a, '/', b, 0}, {b, '/', a, 0}};
      for (Step s : moves) {
        auto c = apply(s.a, s.op, s.b);
        if (!c) continue;
        s.c = *c;
        next[m] = s.c;
        path[depth] = s;
        if (!search(next, m + 1, path, depth + 1, visit)) return false;
      }
    }
  return true;
}

// The chains that reach 24 from a multiset of numbers (at most 500), and which of them
// stay with non-negative integers.
struct Solutions {
  std::vector<std::vector<Step>> chains;
  std::vector<size_t> tidy;
};

// Remembered per thread: a run asks about the same few hundred states over and over,
// and a search over four numbers is thousands of steps.
const Solutions& solutions_of(const std::vector<double>& numbers) {
  static const Solutions kNone;
  if (numbers.empty() || numbers.size() > kMaxNumbers) return kNone;
  thread_local std::map<std::vector<double>, Solutions> memo;
  std::vector<double> key = numbers;
  std::sort(key.begin(), key.end());
  if (auto it = memo.find(key); it != memo.end()) return it->second;
  if (memo.size() >= 1024) memo.clear();  // bounds the memory
  Solutions found;
  Step path[kMaxNumbers];
  auto keep = [&](const Step* chain, size_t len) {
    if (std::all_of(chain, chain + len, [](const Step& s) { return s.c >= 0 && is_integer(s.c); }))
      found.tidy.push_back(found.chains.size());
    found.chains.emplace_back(chain, chain + len);
    return found.chains.size() < 500;
  };
  search(key.data(), key.size(), path, 0, keep);
  return memo.emplace(std::move(key), std::move(found)).first->second;
}

int precedence(char op) { return op == '+' || op == '-' ? 1 : 2; }

// Recursive descent over + - * / and parentheses, collecting the numbers it reads.
class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}
  std::optional<double> parse(std::vector<double>& numbers) {
    numbers_ = &numbers;
    auto v = expr();
    skip();
    if (!v || pos_ != s_.size()) return std::nullopt;
    return v;
  }

 private:
  void skip() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  bool take(char c) {
    skip();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  std::optional<double> expr() {
    auto v = term();
    while (v) {
      if (take('+')) v = sum(v, term(), 1);
      else if (take('-')) v = sum(v, term(), -1);
      else break;
    }
    return v;
  }
  static std::optional<double> sum(std::optional<double> a, std::optional<double> b, int sign) {
    if (!a || !b) return std::nullopt;
    return *a + sign * *b;
  }
  std::optional<double> term() {
    auto v = factor();
    while (v) {
      if (take('*')) {
        auto b = factor();
        v = b ? std::optional<double>(*v * *b) : std::nullopt;
      } else if (take('/')) {
        auto b = factor();
        v = b && *b != 0 ? std::optional<double>(*v / *b) : std::nullopt;
      } else {
        break;
      }
    }
    return v;
  }
  std::optional<double> factor() {
    if (++depth_ > 64) return std::nullopt;  // a hostile prompt must not blow the stack
    std::optional<double> v;
    if (take('(')) {
      v = expr();
      if (!take(')')) v.reset();
    } else if (take('-')) {
      v = factor();
      if (v) v = -*v;
    } else {
      skip();
      double x = 0;
      auto [ptr, ec] = std::from_chars(s_.data() + pos_, s_.data() + s_.size(), x);
      if (ec == std::errc{} && std::isfinite(x)) {
        pos_ = size_t(ptr - s_.data());
        numbers_->push_back(x);
        v = x;
      }
    }
    --depth_;
    return v;
  }

  std::string_view s_;
  size_t pos_ = 0;
  int depth_ = 0;
  std::vector<double>* numbers_ = nullptr;
};

}  // namespace

bool solvable(const std::vector<double>& numbers) { return !solutions_of(numbers).chains.empty(); }

std::vector<Step> random_solution(const std::vector<double>& numbers, SplitMix64& rng) {
  const Solutions& s = solutions_of(numbers);
  if (!s.tidy.empty() && rng.chance(0.9)) return s.chains[s.tidy[rng.below(s.tidy.size())]];
  if (s.chains.empty()) return {};
  return s.chains[rng.below(s.chains.size())];
}

Expr atom(double x) { return {x, format_number(x), x < 0 ? 2 : 3}; }

Expr combine(const Expr& a, char op, const Expr& b, double value) {
  const int p = precedence(op);
  // The right side needs parentheses at equal precedence under - and /: a - (b + c).
  const bool wrap_left = a.precedence < p;
  const bool wrap_right = b.precedence < p || (b.precedence == p && (op == '-' || op == '/'));
  std::string text = wrap_left ? "(" + a.text + ")" : a.text;
  text += ' ';
  text += op;
  text += ' ';
  if (wrap_right) {
    text += '(';
    text += b.text;
    text += ')';
  } else {
    text += b.text;
  }
  return {value, std::move(text), p};
}

void apply_step(std::vector<Expr>& items, const Step& s) {
  // Among equal values the newest item wins: "3 + 3" after "1 + 2 = 3" means that 3.
  auto take = [&](double v) {
    auto it = std::find_if(items.rbegin(), items.rend(), [&](const Expr& e) { return near(e.value, v); });
    if (it == items.rend()) return atom(v);
    Expr e = std::move(*it);
    items.erase(std::next(it).base());
    return e;
  };
  Expr a = take(s.a);
  Expr b = take(s.b);
  items.push_back(combine(a, s.op, b, s.c));
}

bool answer_correct(std::string_view answer, const std::vector<double>& input) {
  while (!answer.empty() && (answer.front() == ' ' || answer.front() == '\t')) answer.remove_prefix(1);
  if (answer.size() >= 7 && (answer.substr(0, 7) == "answer:" || answer.substr(0, 7) == "Answer:"))
    answer.remove_prefix(7);
  std::vector<double> used;
  auto value = Parser(answer.substr(0, answer.find('='))).parse(used);
  if (!value || !near(*value, 24) || used.size() != input.size()) return false;
  std::vector<double> want = input;
  std::sort(used.begin(), used.end());
  std::sort(want.begin(), want.end());
  for (size_t i = 0; i < want.size(); ++i)
    if (!near(used[i], want[i])) return false;
  return true;
}

}  // namespace reprise::fake::game24
