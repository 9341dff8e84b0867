#pragma once
// The cache's Backend over the in-process engine (DESIGN.md section 7): the adapter
// between the OpenAI wire format and engine/engine.hpp. A generation becomes one
// engine job of n samples; streamed text is published as chat or completions chunk
// choices as the engine makes it, and the finished samples carry the engine's own
// token counts. Requests the engine cannot honour exactly (tools, logprobs,
// penalties, ...) are refused with a 400 naming the parameter rather than answered
// as if they had been applied.
#include <memory>
#include <nlohmann/json.hpp>

#include "cache/backend.hpp"
#include "engine/engine.hpp"
#include "proxy/error.hpp"

namespace reprise {

class EngineBackend : public cache::Backend {
 public:
  explicit EngineBackend(engine::Engine& engine) : engine_(engine) {}

  std::string_view name() const override { return "engine"; }
  // One job's samples share the prompt's KV blocks (each adds only its own
  // completion's blocks), so a deficit of up to 64 is one job; a bigger one is split
  // and the jobs batch together anyway.
  uint32_t max_n() const override { return 64; }
  void generate(std::shared_ptr<cache::Generation> gen) override;

  engine::Engine& engine() { return engine_; }

 private:
  engine::Engine& engine_;
};

// The engine job for a canonical chat or completions body (without n, which the
// generation's size gives). Errors name the offending parameter.
Result<engine::Submission> engine_submission(cache::Endpoint endpoint, const nlohmann::json& body);

// The seed basis of a request: the first 8 bytes of its canonical SHA-256, little
// endian (no tenant, no secret: anyone with the request regenerates its samples).
uint64_t engine_key_hash(const cache::Sha256& sha256);

// A job's measured energy split over its samples by their completion tokens (the
// prompt's share goes with them); every entry -1 when the job's energy was not measured.
std::vector<double> sample_energy_j(const engine::Completion& done);

// The "engine" object of /admin/stats.
nlohmann::json engine_stats_json(const engine::Engine& engine);

// The model object of /v1/models for the engine, under `id`.
nlohmann::json engine_model_json(const engine::Engine& engine, const std::string& id);

}  // namespace reprise
