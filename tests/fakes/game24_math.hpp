#pragma once
// The arithmetic behind the simulated Game of 24 model: number formatting, steps, a
// solver, and an evaluator for answer expressions. Doubles throughout: every value
// the game reaches from four small integers is exact enough to compare within 1e-6.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rng.hpp"

namespace reprise::fake::game24 {

bool near(double a, double b);
bool is_integer(double x);

// Integers without decimals, others with up to 2 ("0.5", "1.67").
std::string format_number(double x);

// Numbers separated by whitespace ("4 9 10 13"); nullopt when any word is not one.
std::optional<std::vector<double>> parse_numbers(std::string_view text);

// "a op b = c": one move of the game. c is what the line claims, right or wrong.
struct Step {
  double a;
  char op;  // + - * /
  double b;
  double c;
};

// a op b; nullopt for a division by zero.
std::optional<double> apply(double a, char op, double b);

// "a op b = c (left: ...)", the numbers left being `rest` and c, ascending.
std::string step_line(const Step& s, std::vector<double> rest);

// Whether the numbers (1 to 4 of them; more count as unsolvable) reach 24 with + - * /,
// each used once.
bool solvable(const std::vector<double>& numbers);

// A chain of steps that reaches 24, drawn at random, mostly among those that stay with
// non-negative integers as a person (and a model imitating the examples) would; empty
// when there is none.
std::vector<Step> random_solution(const std::vector<double>& numbers, SplitMix64& rng);

// An infix expression built up step by step, with no more parentheses than needed.
struct Expr {
  double value;
  std::string text;
  int precedence;  // 1: + -, 2: * /, 3: a number or a parenthesised group
};
Expr atom(double x);
Expr combine(const Expr& a, char op, const Expr& b, double value);

// Applies `s` to `items`: takes an item worth s.a and another worth s.b (a bare number
// when none is), and adds their combination worth s.c.
void apply_step(std::vector<Expr>& items, const Step& s);

// Whether `answer` ("(6 - 4) * (4 + 8) = 24", an optional "answer:" before it) uses
// each of `input` exactly once, no other numbers, and equals 24.
bool answer_correct(std::string_view answer, const std::vector<double>& input);

}  // namespace reprise::fake::game24
