#include "cache/energy.hpp"

#include "cache/glob.hpp"

#include <cctype>
#include <string>

namespace reprise::cache {

std::optional<EnergyCoefficients> energy_class(std::string_view name) {
  if (name == "small") return EnergyCoefficients{0.05, 0.25, 1};
  if (name == "medium") return EnergyCoefficients{0.10, 0.50, 2};
  if (name == "large") return EnergyCoefficients{0.20, 1.0, 3};
  if (name == "frontier") return EnergyCoefficients{0.40, 2.0, 10};
  return std::nullopt;
}

std::optional<double> size_in_name(std::string_view model) {
  // The last "<number>b" that stands alone: preceded by a non-alphanumeric (or
  // "<k>x" for mixtures of experts) and followed by a non-alphanumeric or the end.
  std::optional<double> found;
  for (size_t i = 0; i < model.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(model[i]))) continue;
    if (i > 0 && std::isalnum(static_cast<unsigned char>(model[i - 1])) && model[i - 1] != 'x') continue;
    size_t j = i;
    while (j < model.size() && (std::isdigit(static_cast<unsigned char>(model[j])) || model[j] == '.')) ++j;
    if (j < model.size() && (model[j] == 'b' || model[j] == 'B') &&
        (j + 1 == model.size() || !std::isalnum(static_cast<unsigned char>(model[j + 1])))) {
      double billions = std::stod(std::string(model.substr(i, j - i)));
      // "8x7b": eight experts of 7B each.
      if (i >= 2 && model[i - 1] == 'x') {
        size_t k = i - 1;
        while (k > 0 && std::isdigit(static_cast<unsigned char>(model[k - 1]))) --k;
        if (k < i - 1) billions *= std::stod(std::string(model.substr(k, i - 1 - k)));
      }
      found = billions;
    }
    i = j;
  }
  return found;
}

EnergyModel::EnergyModel(std::vector<EnergyRule> rules, std::string default_class)
    : rules_(std::move(rules)), default_class_(std::move(default_class)) {
  if (!energy_class(default_class_)) default_class_ = "frontier";
}

namespace {

EnergyResolution from_rule(const EnergyRule& rule, std::string resolved_by) {
  EnergyResolution r;
  r.resolved_by = std::move(resolved_by);
  if (rule.coefficients) {
    r.coefficients = *rule.coefficients;
    r.energy_class = "custom";
  } else {
    r.coefficients = energy_class(rule.energy_class).value_or(*energy_class("frontier"));
    r.energy_class = rule.energy_class;
  }
  return r;
}

}  // namespace

EnergyResolution EnergyModel::resolve(std::string_view model) const {
  for (auto& rule : rules_)
    if (rule.match == model) return from_rule(rule, "exact:" + rule.match);
  for (auto& rule : rules_)
    if (glob_match(rule.match, model)) return from_rule(rule, "glob:" + rule.match);
  if (auto billions = size_in_name(model)) {
    // Classes by size: small up to 10B, medium up to 40B, large beyond.
    std::string name = *billions <= 10 ? "small" : *billions <= 40 ? "medium" : "large";
    std::string number = std::to_string(*billions);
    number.erase(number.find_last_not_of('0') + 1);
    if (number.back() == '.') number.pop_back();
    return {*energy_class(name), name, "size:" + number + "b"};
  }
  return {*energy_class(default_class_), default_class_, "default"};
}

double EnergyModel::joules(const EnergyCoefficients& k, double pue, uint64_t prompt_tokens,
                           uint64_t completion_tokens, uint64_t calls) {
  return pue * (k.a * double(prompt_tokens) + k.b * double(completion_tokens) + k.c * double(calls));
}

}  // namespace reprise::cache
