#pragma once
// A simulated LLM for the Tree-of-Thoughts Game of 24 prompts (Yao et al. 2023): it
// recognises the propose, value, chain-of-thought and last-step judge prompts and
// answers them with well-formed text sampled at random, wrong steps and wrong
// judgements included, at rates set below (see README.md, "Simulated Game of 24
// model"). It is a simulation for exercising a ToT client and a cache, not a solver
// benchmark.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "game24_math.hpp"
#include "rng.hpp"

namespace reprise::fake::game24 {

enum class Kind : uint8_t { propose, value, value_last_step, cot, other };
inline constexpr size_t kKinds = 5;
inline constexpr std::array<std::string_view, kKinds> kKindNames = {"propose", "value", "value_last_step",
                                                                     "cot", "other"};

// A recognised prompt, parsed.
struct Task {
  Kind kind = Kind::other;
  std::vector<double> numbers;  // propose, value: the current numbers; cot, judge: the puzzle
  bool continuation = false;    // cot: the prompt already has "Steps:" ...
  std::vector<Step> steps;      // ... and these steps under it
  bool steps_reach_24 = false;  // cot: the last given step leaves only 24
  std::string answer;           // value_last_step: the answer to judge
};

// What a prompt asks for; kind `other` when it is none of the four (or its numbers do
// not parse, or there are more than four of them).
Task classify(std::string_view prompt);

// One sampled answer to a recognised task.
std::string answer(const Task& task, SplitMix64& rng);

}  // namespace reprise::fake::game24
