#pragma once
// The energy model of DESIGN.md section 5: what a call to a model costs in joules,
//   E = PUE * (a * prompt_tokens + b * completion_tokens + c)
// with per-class coefficients (J per token, J per call), the class of a model resolved
// from the configuration or its name. A cache hit avoids E; a generation spends it.
// Sources for the defaults: ML.ENERGY v3 (H100, Llama-3.1-8B 0.12 J per output token
// at batch 64, GPU only, x1.7 for the whole server), Epoch AI, Google 2025 (0.24 Wh
// median prompt). These are estimates with a wide band: stats report /3 and x3 too.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace reprise::cache {

struct EnergyCoefficients {
  double a = 0;  // J per prompt token
  double b = 0;  // J per completion token
  double c = 0;  // J per call
};

// The built-in classes: small (<= 10B), medium, large (~70B), frontier (the default
// for unknown models).
std::optional<EnergyCoefficients> energy_class(std::string_view name);

// One [[energy.models]] rule: models matching the glob belong to a class, or have
// their own coefficients (a, b, c all set).
struct EnergyRule {
  std::string match;
  std::string energy_class;                 // empty when coefficients are given
  std::optional<EnergyCoefficients> coefficients;
};

struct EnergyResolution {
  EnergyCoefficients coefficients;
  std::string energy_class;  // the class used, or "custom"
  std::string resolved_by;   // "exact:<rule>", "glob:<rule>", "size:<N>b", "default"
};

class EnergyModel {
 public:
  EnergyModel(std::vector<EnergyRule> rules, std::string default_class = "frontier");

  // Exact name among the rules first, then the first glob that matches, then a size
  // in the model's name ("llama-3.1-8b" -> small, "70b" -> large), then the default.
  EnergyResolution resolve(std::string_view model) const;

  // Joules of `calls` calls with these token counts.
  static double joules(const EnergyCoefficients& k, double pue, uint64_t prompt_tokens,
                       uint64_t completion_tokens, uint64_t calls);

 private:
  std::vector<EnergyRule> rules_;
  std::string default_class_;
};

// The parameter count in a model name, in billions: "llama-3.1-8b-instruct" -> 8,
// "Qwen2.5-0.5B" -> 0.5, "mixtral-8x7b" -> 56; nullopt when none is written.
std::optional<double> size_in_name(std::string_view model);

inline double joules_to_wh(double joules) { return joules / 3600.0; }
// Grams of CO2e for `wh` watt-hours at `g_per_kwh`.
inline double wh_to_co2_g(double wh, double g_per_kwh) { return wh / 1000.0 * g_per_kwh; }

}  // namespace reprise::cache
