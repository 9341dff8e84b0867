#include "game24.hpp"

#include <algorithm>
#include <set>
#include <utility>

namespace reprise::fake::game24 {

namespace {

// The fixed openings and endings of the ToT prompts (princeton-nlp/tree-of-thought-llm,
// src/tot/prompts/game24.py).
constexpr std::string_view kCotHead =
    "Use numbers and basic arithmetic operations (+ - * /) to obtain 24. Each step, you are only "
    "allowed to choose two of the remaining numbers to obtain a new number.";
constexpr std::string_view kJudgeHead =
    "Use numbers and basic arithmetic operations (+ - * /) to obtain 24. Given an input and an "
    "answer, give a judgement (sure/impossible) if the answer is correct";
constexpr std::string_view kValueHead = "Evaluate if given numbers can reach 24 (sure/likely/impossible)";
constexpr std::string_view kProposeTail = "Possible next steps:";

// How often the simulated model errs or succeeds (README.md lists them).
constexpr double kProposeWrong = 0.08;        // a proposed step with a mistake in it
constexpr double kCotCorrect = 0.35;          // a fresh chain that a solver picked
constexpr double kFalse24 = 0.5;              // a wrong chain's last step claims 24 anyway
constexpr double kAnswerComposes = 0.9;       // the Answer line matches the given steps
constexpr double kJudgeRight = 0.9;           // the last-step judge is right
constexpr double kSingleRight = 0.95;         // value of a single number is right
constexpr double kSureIfSolvable = 0.6, kLikelyIfSolvable = 0.3;
constexpr double kSureIfNot = 0.05, kLikelyIfNot = 0.25;
constexpr double kSayCannot = 0.8;            // "likely" comes with "I cannot obtain 24 now ..."

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// The lines of `s`, each trimmed (so \r\n endings and trailing blanks do not matter).
std::vector<std::string_view> split_lines(std::string_view s) {
  std::vector<std::string_view> lines;
  for (size_t start = 0;;) {
    size_t end = s.find('\n', start);
    lines.push_back(trim(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start)));
    if (end == std::string_view::npos) return lines;
    start = end + 1;
  }
}

// The numbers after a label ("Input: 4 9 10 13"): 1 to 4 of them, or none.
std::optional<std::vector<double>> numbers_after(std::string_view line, std::string_view label) {
  if (!line.starts_with(label)) return std::nullopt;
  auto numbers = parse_numbers(line.substr(label.size()));
  if (!numbers || numbers->empty() || numbers->size() > 4) return std::nullopt;
  return numbers;
}

// "a op b = c (left: ...)"; the left numbers go to `left`.
std::optional<Step> parse_step(std::string_view line, std::vector<double>& left) {
  size_t open = line.find("(left:");
  size_t close = line.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return std::nullopt;
  const std::string_view words = line.substr(0, open);
  // Split "a op b = c" by blanks: five words.
  std::vector<std::string_view> w;
  for (size_t i = 0; i < words.size();) {
    if (is_space(words[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < words.size() && !is_space(words[end])) ++end;
    w.push_back(words.substr(i, end - i));
    i = end;
  }
  if (w.size() != 5 || w[1].size() != 1 || std::string_view("+-*/").find(w[1][0]) == std::string_view::npos ||
      w[3] != "=")
    return std::nullopt;
  auto a = parse_numbers(w[0]), b = parse_numbers(w[2]), c = parse_numbers(w[4]);
  auto l = parse_numbers(line.substr(open + 6, close - open - 6));
  if (!a || !b || !c || !l || a->size() != 1 || b->size() != 1 || c->size() != 1) return std::nullopt;
  left = std::move(*l);
  return Step{a->front(), w[1][0], b->front(), c->front()};
}

Task classify_cot(const std::vector<std::string_view>& lines) {
  Task task;
  size_t input = lines.size();
  while (input > 0 && !lines[input - 1].starts_with("Input:")) --input;
  if (input == 0) return task;
  auto numbers = numbers_after(lines[input - 1], "Input:");
  if (!numbers) return task;
  task.kind = Kind::cot;
  task.numbers = std::move(*numbers);
  if (input == lines.size() || !lines[input].starts_with("Steps:")) return task;  // a fresh chain
  task.continuation = true;
  std::vector<double> left;
  for (size_t i = input; i < lines.size(); ++i) {
    // ToT appends the steps right after "Steps:", the first one on the same line.
    std::string_view line = i == input ? trim(lines[i].substr(6)) : lines[i];
    std::vector<double> this_left;
    if (auto step = parse_step(line, this_left)) {
      task.steps.push_back(*step);
      left = std::move(this_left);
    }
  }
  task.steps_reach_24 = left.size() == 1 && near(left[0], 24);
  return task;
}

// A move the model may propose: a step, the numbers it leaves besides its result, and
// how likely it is to come up.
struct Move {
  Step step;
  std::vector<double> rest;
  double weight;
};

// The distinct moves from `numbers`, weighted towards non-negative integer results (a
// single number is combined with itself: the model makes something up).
std::vector<Move> moves(const std::vector<double>& numbers, SplitMix64& rng) {
  std::vector<Move> out;
  auto add = [&](double a, char op, double b, const std::vector<double>& rest, double weight, bool commutes) {
    auto c = apply(a, op, b);
    if (!c) return;
    if (*c < 0) weight *= 0.05;
    if (op == '/' && !is_integer(*c)) weight *= 0.1;
    if (commutes && a > b) std::swap(a, b);
    // The same two values make the same line (8 + 2 twice in 2 8 8 14): the operands
    // decide what is left, so comparing them is enough.
    for (const Move& m : out)
      if (m.step.op == op && ((near(m.step.a, a) && near(m.step.b, b)) ||
                              (commutes && near(m.step.a, b) && near(m.step.b, a))))
        return;
    if (commutes && rng.chance(0.5)) std::swap(a, b);
    out.push_back({{a, op, b, *c}, rest, weight});
  };
  std::vector<double> rest;
  const size_t n = numbers.size();
  for (size_t i = 0; i < n; ++i)
    for (size_t j = n == 1 ? i : i + 1; j < n; ++j) {
      rest.clear();
      for (size_t k = 0; k < n; ++k)
        if (k != i && k != j) rest.push_back(numbers[k]);
      const double big = std::max(numbers[i], numbers[j]), small = std::min(numbers[i], numbers[j]);
      add(numbers[i], '+', numbers[j], rest, 1, true);
      add(numbers[i], '*', numbers[j], rest, 1, true);
      add(big, '-', small, rest, 1, false);
      add(small, '-', big, rest, 1, false);
      add(big, '/', small, rest, 1, false);
      add(small, '/', big, rest, 0.5, false);
    }
  return out;
}

// Draws one of the moves not yet used, by weight; marks it used.
const Move& draw(const std::vector<Move>& ms, std::vector<bool>& used, SplitMix64& rng) {
  double total = 0;
  for (size_t i = 0; i < ms.size(); ++i)
    if (!used[i]) total += ms[i].weight;
  double r = rng.uniform() * total;
  size_t pick = ms.size();
  for (size_t i = 0; i < ms.size(); ++i) {
    if (used[i]) continue;
    pick = i;
    if ((r -= ms[i].weight) < 0) break;
  }
  used[pick] = true;
  return ms[pick];
}

double nudge(SplitMix64& rng) { return rng.between(1, 3) * (rng.chance(0.5) ? 1.0 : -1.0); }

// A proposal with a mistake: a wrong result, or a number left that was not there.
std::string wrong_line(Move m, SplitMix64& rng) {
  if (m.rest.empty() || rng.chance(0.5)) m.step.c += nudge(rng);
  else m.rest[rng.below(m.rest.size())] += nudge(rng);
  return step_line(m.step, m.rest);
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

std::string propose(const std::vector<double>& numbers, SplitMix64& rng) {
  auto ms = moves(numbers, rng);
  std::vector<bool> used(ms.size());
  const size_t count = std::min(size_t(rng.between(3, 8)), ms.size());
  std::set<std::string> seen;
  std::vector<std::string> lines;
  for (size_t k = 0; k < count; ++k) {
    const Move& m = draw(ms, used, rng);
    std::string line = rng.chance(kProposeWrong) ? wrong_line(m, rng) : step_line(m.step, m.rest);
    if (seen.contains(line)) line = step_line(m.step, m.rest);  // a mistake that repeats a line
    if (seen.insert(line).second) lines.push_back(std::move(line));
  }
  return join(lines, "\n");
}

template <class T>
void shuffle(std::vector<T>& v, SplitMix64& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

// An attempt of the value prompt's kind, folding the numbers left to right:
// "(8 - 5) * 7 = 3 * 7 = 21". With claim_24 the last value is a false 24.
std::string attempt(std::vector<double> xs, SplitMix64& rng, bool claim_24) {
  shuffle(xs, rng);
  std::vector<char> ops(xs.size(), '+');
  std::vector<double> acc(xs.size(), xs[0]);
  for (size_t m = 1; m < xs.size(); ++m) {
    char op = "+-*/"[rng.below(4)];
    if (op == '/' && (xs[m] == 0 || !is_integer(acc[m - 1] / xs[m]))) op = rng.chance(0.5) ? '+' : '*';
    if (op == '-' && acc[m - 1] < xs[m] && rng.chance(0.7)) op = '+';
    ops[m] = op;
    acc[m] = *apply(acc[m - 1], op, xs[m]);
  }
  // The expression with its first s+1 numbers already worked out.
  auto render = [&](size_t s) {
    std::string text = format_number(acc[s]);
    bool low = false;  // the text so far ends in + or - at the top level
    for (size_t m = s + 1; m < xs.size(); ++m) {
      const bool high = ops[m] == '*' || ops[m] == '/';
      if (high && low) text = "(" + text + ")";
      text += ' ';
      text += ops[m];
      text += ' ';
      text += format_number(xs[m]);
      low = !high;
    }
    return text;
  };
  std::vector<std::string> parts;
  for (size_t s = 0; s + 1 < xs.size(); ++s) parts.push_back(render(s));
  parts.push_back(claim_24 ? "24" : format_number(acc.back()));
  return join(parts, " = ");
}

// The expression of a chain of steps over `numbers`.
Expr compose(const std::vector<double>& numbers, const std::vector<Step>& chain) {
  std::vector<Expr> items;
  for (double x : numbers) items.push_back(atom(x));
  for (const Step& s : chain) apply_step(items, s);
  return items.front();
}

std::string value(const std::vector<double>& numbers, SplitMix64& rng) {
  if (numbers.size() == 1) {
    const bool is_24 = near(numbers[0], 24);
    const bool say_sure = rng.chance(kSingleRight) == is_24;
    return format_number(numbers[0]) + (is_24 ? " = 24\n" : " != 24\n") + (say_sure ? "sure" : "impossible");
  }
  const bool can = solvable(numbers);
  const double u = rng.uniform();
  const double sure_p = can ? kSureIfSolvable : kSureIfNot, likely_p = can ? kLikelyIfSolvable : kLikelyIfNot;
  const std::string_view verdict = u < sure_p ? "sure" : u < sure_p + likely_p ? "likely" : "impossible";

  std::vector<std::string> lines;
  const int tries = rng.between(1, 3);
  for (int i = 0; i < tries; ++i) {
    const bool last = i + 1 == tries;
    if (last && verdict == "sure" && can) {
      lines.push_back(compose(numbers, random_solution(numbers, rng)).text + " = 24");
    } else {
      lines.push_back(attempt(numbers, rng, last && verdict == "sure"));  // sure of a false 24
    }
  }
  if (verdict == "likely" && rng.chance(kSayCannot))
    lines.emplace_back("I cannot obtain 24 now, but numbers are within a reasonable range");
  lines.emplace_back(verdict);
  return join(lines, "\n");
}

// Swaps one operator of an expression for another: an Answer that strays from its steps.
std::string corrupt(std::string expr, SplitMix64& rng) {
  std::vector<size_t> at;
  for (size_t i = 1; i + 1 < expr.size(); ++i)
    if (expr[i - 1] == ' ' && expr[i + 1] == ' ' && std::string_view("+-*/").find(expr[i]) != std::string_view::npos)
      at.push_back(i);
  if (at.empty()) return expr + " + 1";
  char& op = expr[at[rng.below(at.size())]];
  const std::string_view others = op == '+' ? "-*/" : op == '-' ? "+*/" : op == '*' ? "+-/" : "+-*";
  op = others[rng.below(3)];
  return expr;
}

std::vector<double> values_of(const std::vector<Expr>& items) {
  std::vector<double> v;
  for (const Expr& e : items) v.push_back(e.value);
  return v;
}

// The numbers left after taking one a and one b out of `values`, c not yet added.
std::vector<double> rest_after(std::vector<double> values, const Step& s) {
  for (double x : {s.a, s.b}) {
    auto it = std::find_if(values.begin(), values.end(), [&](double v) { return near(v, x); });
    if (it != values.end()) values.erase(it);
  }
  return values;
}

// Steps from the current items down to one number: a solver's chain now and then, else
// a random one that (mostly) misses 24, its last step sometimes claiming 24 anyway.
std::vector<std::string> finish_chain(std::vector<Expr>& items, SplitMix64& rng) {
  std::vector<double> values = values_of(items);
  std::vector<Step> chain;
  if (rng.chance(kCotCorrect)) chain = random_solution(values, rng);
  for (int attempt = 0; chain.empty() && attempt < 5; ++attempt) {
    std::vector<double> now = values;
    while (now.size() > 1) {
      auto ms = moves(now, rng);
      std::vector<bool> used(ms.size());
      const Move& m = draw(ms, used, rng);
      chain.push_back(m.step);
      now = m.rest;
      now.push_back(m.step.c);
    }
    if (attempt < 4 && near(now[0], 24)) chain.clear();  // meant to be a wrong chain
    else if (!near(now[0], 24) && rng.chance(kFalse24)) chain.back().c = 24;
  }
  std::vector<std::string> lines;
  for (const Step& s : chain) {
    lines.push_back(step_line(s, rest_after(values_of(items), s)));
    apply_step(items, s);
  }
  return lines;
}

std::string cot(const Task& task, SplitMix64& rng) {
  std::vector<Expr> items;
  for (double x : task.numbers) items.push_back(atom(x));
  for (const Step& s : task.steps) apply_step(items, s);
  const bool done = items.size() == 1;
  std::vector<std::string> lines;
  if (!done) lines = finish_chain(items, rng);
  std::string expr = items.back().text;
  if (done && task.steps_reach_24 && !rng.chance(kAnswerComposes)) expr = corrupt(std::move(expr), rng);
  lines.push_back("Answer: " + expr + " = 24");
  const std::string body = join(lines, "\n");
  return task.continuation ? body : "Steps:\n" + body;
}

std::string judge(const Task& task, SplitMix64& rng) {
  const bool correct = answer_correct(task.answer, task.numbers);
  return rng.chance(kJudgeRight) == correct ? "sure" : "impossible";
}

}  // namespace

Task classify(std::string_view prompt) {
  Task task;
  const std::string_view text = trim(prompt);
  // The instruction may come after a preamble on its first line ("Speak briefly. ").
  const std::string_view first_line = text.substr(0, text.find('\n'));
  const bool propose_like = text.ends_with(kProposeTail);
  const bool value_like = first_line.find(kValueHead) != std::string_view::npos;
  const bool judge_like = first_line.find(kJudgeHead) != std::string_view::npos;
  const bool cot_like = first_line.find(kCotHead) != std::string_view::npos;
  if (!propose_like && !value_like && !judge_like && !cot_like) return task;  // cheap: no split
  const auto lines = split_lines(text);
  const size_t n = lines.size();
  if (propose_like) {
    if (n >= 2 && lines[n - 1] == kProposeTail) {
      if (auto numbers = numbers_after(lines[n - 2], "Input:")) {
        task.kind = Kind::propose;
        task.numbers = std::move(*numbers);
      }
    }
  } else if (value_like) {
    if (auto numbers = numbers_after(lines[n - 1], ""); numbers && n >= 2) {
      task.kind = Kind::value;
      task.numbers = std::move(*numbers);
    }
  } else if (judge_like) {
    if (n >= 3 && lines[n - 1] == "Judge:" && lines[n - 2].starts_with("Answer:")) {
      if (auto numbers = numbers_after(lines[n - 3], "Input:")) {
        task.kind = Kind::value_last_step;
        task.numbers = std::move(*numbers);
        task.answer = trim(lines[n - 2].substr(7));
      }
    }
  } else {
    task = classify_cot(lines);
  }
  return task;
}

std::string answer(const Task& task, SplitMix64& rng) {
  switch (task.kind) {
    case Kind::propose: return propose(task.numbers, rng);
    case Kind::value: return value(task.numbers, rng);
    case Kind::value_last_step: return judge(task, rng);
    case Kind::cot: return cot(task, rng);
    case Kind::other: break;
  }
  return {};
}

}  // namespace reprise::fake::game24
