#include "proxy/engine_backend.hpp"

#include "proxy/dialect.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>

#include "proxy/log.hpp"

namespace reprise {
namespace {

using nlohmann::json;

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Error bad(std::string message, std::string param) {
  return Error{ErrorKind::bad_request, std::move(message), std::move(param)};
}

// Parameters a request may carry that do not change what the engine computes, or
// that the proxy already took out of the body (n, stream, user).
const std::set<std::string, std::less<>> kIgnored = {
    "model", "seed", "metadata", "store", "service_tier", "parallel_tool_calls", "stream_options",
};

// Parameters the engine does not implement: accepted only at the value that means
// "off", so no client believes they were applied.
bool is_off(const std::string& name, const json& v) {
  if (v.is_null()) return true;
  if (name == "presence_penalty" || name == "frequency_penalty") return v.is_number() && v.get<double>() == 0;
  if (name == "logprobs" || name == "echo") return v.is_boolean() ? !v.get<bool>() : false;
  if (name == "logit_bias") return v.is_object() && v.empty();
  if (name == "best_of") return v.is_number_integer() && v.get<int64_t>() == 1;
  if (name == "response_format") return v.is_object() && v.value("type", "") == "text";
  if (name == "tools" || name == "functions") return v.is_array() && v.empty();
  if (name == "tool_choice" || name == "function_call") return v.is_string() && v.get<std::string>() == "none";
  return false;
}

Result<std::string> message_text(const json& content, size_t index) {
  const std::string param = "messages[" + std::to_string(index) + "].content";
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return std::string();
  if (!content.is_array()) return bad("content must be a string or an array of text parts", param);
  std::string text;
  for (auto& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      return bad("the engine reads only text parts ({\"type\":\"text\",\"text\":...})", param);
    text += part["text"].get<std::string>();
  }
  return text;
}

Result<std::vector<engine::ChatMessage>> chat_messages(const json& messages) {
  if (!messages.is_array() || messages.empty()) return bad("messages must be a non-empty array", "messages");
  std::vector<engine::ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string param = "messages[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) return bad("each message needs a role", param);
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";  // the newer name of the same thing
    if (role != "system" && role != "user" && role != "assistant")
      return bad("the engine has no tool support: role \"" + role + "\" is not accepted", param + ".role");
    if (m.contains("tool_calls") && !m["tool_calls"].is_null())
      return bad("the engine has no tool support: tool_calls are not accepted", param + ".tool_calls");
    auto text = message_text(m.value("content", json()), i);
    if (!text) return text.error();
    out.push_back({std::move(role), std::move(text.value())});
  }
  return out;
}

// A legacy prompt: a string, or token ids, alone or as the only element of a list.
Result<bool> read_prompt(const json& prompt, engine::Submission& s) {
  const json* p = &prompt;
  if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) p = &(*p)[0];
  if (p->is_string()) {
    s.text = p->get<std::string>();
    return true;
  }
  if (p->is_array() && !p->empty()) {
    for (auto& id : *p) {
      if (!id.is_number_integer()) return bad("prompt must be a string or an array of token ids", "prompt");
      const int64_t v = id.get<int64_t>();
      if (v < 0 || v > INT32_MAX) return bad("token id " + std::to_string(v) + " is out of range", "prompt");
      s.tokens.push_back(static_cast<engine::TokenId>(v));
    }
    s.use_tokens = true;
    return true;
  }
  return bad("prompt must be a string or an array of token ids (one prompt per request)", "prompt");
}

Result<double> number_in(const json& body, const char* name, double lo, double hi, double fallback) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_number() || it->get<double>() < lo || it->get<double>() > hi)
    return bad(std::string(name) + " must be a number in [" + json(lo).dump() + ", " + json(hi).dump() + "]", name);
  return it->get<double>();
}

cache::GenerationError engine_error(const engine::EngineError& e) {
  switch (e.code) {
    case engine::EngineErrc::invalid_request: return to_generation_error(bad(e.message, {}));
    case engine::EngineErrc::context_exceeded:
      return to_generation_error(Error{ErrorKind::context_length_exceeded, e.message, "messages"});
    case engine::EngineErrc::overloaded: {
      auto g = to_generation_error(Error{ErrorKind::overloaded, e.message, {}});
      g.headers.emplace_back("Retry-After", "1");
      return g;
    }
    case engine::EngineErrc::shutting_down:
    // Every client of the generation left; one who joins it late may simply retry.
    case engine::EngineErrc::cancelled: return to_generation_error(Error{ErrorKind::overloaded, e.message, {}});
    case engine::EngineErrc::internal: break;
  }
  log::error("engine: " + e.message);
  return to_generation_error(Error{ErrorKind::internal, "engine: " + e.message, {}});
}

const char* finish_name(engine::Finish f) { return f == engine::Finish::stop ? "stop" : "length"; }

}  // namespace

Result<engine::Submission> engine_submission(cache::Endpoint endpoint, const json& body) {
  if (endpoint == cache::Endpoint::embeddings)
    return Error{ErrorKind::bad_request, "the engine does not serve embeddings", "model"};
  if (!body.is_object()) return Error{ErrorKind::invalid_json, "the request body must be a JSON object", {}};
  const bool chat = endpoint == cache::Endpoint::chat_completions;
  engine::Submission s;
  s.chat = chat;
  static const std::set<std::string, std::less<>> handled = {
      "messages", "prompt", "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "stop"};
  for (auto& [name, value] : body.items()) {
    if (handled.count(name) || kIgnored.count(name)) continue;
    if (is_off(name, value)) continue;
    return bad("the engine does not support the parameter " + name + (value.is_null() ? "" : " = " + value.dump()),
               name);
  }
  if (chat) {
    auto messages = chat_messages(body.value("messages", json()));
    if (!messages) return messages.error();
    s.messages = std::move(messages.value());
  } else {
    auto prompt = read_prompt(body.value("prompt", json()), s);
    if (!prompt) return prompt.error();
  }
  auto temperature = number_in(body, "temperature", 0, 2, 1);
  if (!temperature) return temperature.error();
  auto top_p = number_in(body, "top_p", 0, 1, 1);
  if (!top_p) return top_p.error();
  s.sampler.temperature = static_cast<float>(temperature.value());
  s.sampler.top_p = static_cast<float>(top_p.value());
  if (auto k = body.find("top_k"); k != body.end() && !k->is_null()) {
    if (!k->is_number_integer() || k->get<int64_t>() < 0 || k->get<int64_t>() > 1'000'000)
      return bad("top_k must be a non-negative integer (0 = off)", "top_k");
    s.sampler.top_k = static_cast<int>(k->get<int64_t>());
  }
  // max_completion_tokens is the chat API's newer name; when both come, it wins.
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) continue;
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 1'000'000)
      return bad(std::string(name) + " must be a positive integer", name);
    s.max_tokens = static_cast<int>(it->get<int64_t>());
  }
  // The legacy completions API stops at 16 tokens when max_tokens is absent.
  if (!chat && s.max_tokens < 0) s.max_tokens = 16;
  if (auto stop = body.find("stop"); stop != body.end() && !stop->is_null()) {
    if (stop->is_string()) {
      s.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array() && stop->size() <= 16) {
      for (auto& one : *stop) {
        if (!one.is_string()) return bad("stop must be a string or an array of up to 16 strings", "stop");
        s.stop.push_back(one.get<std::string>());
      }
    } else {
      return bad("stop must be a string or an array of up to 16 strings", "stop");
    }
    for (auto& one : s.stop)
      if (one.empty()) return bad("stop strings must not be empty", "stop");
  }
  return s;
}

uint64_t engine_key_hash(const cache::Sha256& sha256) {
  uint64_t h = 0;
  for (int i = 7; i >= 0; --i) h = (h << 8) | sha256[static_cast<size_t>(i)];
  return h;
}

void EngineBackend::generate(std::shared_ptr<cache::Generation> gen) {
  // The OpenAI endpoints are the engine's own; every other dialect says its request
  // as a chat request and gets the chat samples back as its own (proxy/dialect.hpp).
  // Those are not streamed live: their clients get the samples replayed, in their
  // dialect's events, once the generation is done.
  const Dialect* dialect = &dialect_of(gen->endpoint());
  const bool native = gen->endpoint() == cache::Endpoint::chat_completions ||
                      gen->endpoint() == cache::Endpoint::completions || gen->endpoint() == cache::Endpoint::embeddings;
  const cache::Endpoint endpoint = native ? gen->endpoint() : cache::Endpoint::chat_completions;
  Result<json> chat_body = native ? Result<json>(gen->request().body) : dialect->engine_chat_body(gen->request());
  if (!chat_body) {
    gen->fail(to_generation_error(chat_body.error()));
    return;
  }
  auto submission = engine_submission(endpoint, chat_body.value());
  if (!submission) {
    gen->fail(to_generation_error(submission.error()));
    return;
  }
  const bool live = native && gen->stream();
  engine::Submission& s = submission.value();
  s.n = static_cast<int>(gen->size());
  s.key_hash = engine_key_hash(gen->request().sha256);
  s.first_index = [g = gen.get()] { return g->first_index(); };  // gen outlives the job: the callbacks hold it

  const bool chat = endpoint == cache::Endpoint::chat_completions;
  const std::string model = gen->request().model;
  const std::string fingerprint = "reprise-engine";
  gen->set_identity(model, fingerprint);
  if (live && chat)
    for (uint32_t i = 0; i < gen->size(); ++i)
      gen->publish(i, {{"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}});

  engine::Callbacks callbacks;
  if (live) {
    callbacks.on_text = [gen, chat](int i, std::string_view text) {
      json piece = chat ? json{{"delta", {{"content", text}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}
                        : json{{"text", text}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
      gen->publish(static_cast<uint32_t>(i), std::move(piece));
    };
  }
  callbacks.on_done = [gen, chat, model, fingerprint, live, native, dialect](const engine::Completion* done,
                                                                             const engine::EngineError* error) {
    if (error) {
      gen->fail(engine_error(*error));
      return;
    }
    std::vector<cache::Sample> samples;
    const std::vector<double> energy = sample_energy_j(*done);
    for (size_t i = 0; i < done->samples.size(); ++i) {
      const engine::SampleResult& r = done->samples[i];
      const char* finish = finish_name(r.finish);
      if (live)
        gen->publish(static_cast<uint32_t>(i), chat ? json{{"delta", json::object()}, {"logprobs", nullptr}, {"finish_reason", finish}}
                                                    : json{{"text", ""}, {"logprobs", nullptr}, {"finish_reason", finish}});
      cache::Sample sample;
      sample.choice = chat ? json{{"message", {{"role", "assistant"}, {"content", r.text}, {"refusal", nullptr}}},
                                  {"logprobs", nullptr}, {"finish_reason", finish}}
                           : json{{"text", r.text}, {"logprobs", nullptr}, {"finish_reason", finish}};
      sample.finish_reason = finish;
      sample.completion_tokens = static_cast<uint32_t>(r.completion_tokens);
      sample.prompt_tokens = static_cast<uint32_t>(done->prompt_tokens);
      sample.system_fingerprint = fingerprint;
      sample.model = model;
      sample.created = now_seconds();
      sample.backend = "engine";
      sample.energy_j = energy[i];
      samples.push_back(native ? std::move(sample) : dialect->from_engine_sample(std::move(sample), gen->request()));
    }
    gen->complete(std::move(samples));
  };
  // Cancellation: when every client of the generation has left (generation.hpp), the
  // job leaves the engine's batch at its next step and frees its KV blocks; the
  // generation fails at once, so nothing is stored and a request that comes next
  // starts afresh instead of joining it. The engine's own `cancelled` answer then
  // finds the generation ended and is ignored.
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  s.cancelled = cancelled;
  gen->set_canceller([cancelled, g = gen.get()] {
    cancelled->store(true, std::memory_order_relaxed);
    g->fail(engine_error({engine::EngineErrc::cancelled, "every client of this generation disconnected"}));
  });
  if (auto refused = engine_.submit(std::move(s), std::move(callbacks))) gen->fail(engine_error(*refused));
}

std::vector<double> sample_energy_j(const engine::Completion& done) {
  const size_t n = done.samples.size();
  std::vector<double> out(n, -1.0);
  if (done.energy_j < 0 || n == 0) return out;
  uint64_t tokens = 0;
  for (auto& s : done.samples) tokens += uint64_t(std::max(0, s.completion_tokens));
  for (size_t i = 0; i < n; ++i)
    out[i] = tokens ? done.energy_j * double(std::max(0, done.samples[i].completion_tokens)) / double(tokens)
                    : done.energy_j / double(n);
  return out;
}

json engine_stats_json(const engine::Engine& engine) {
  const engine::EngineInfo& info = engine.info();
  const engine::EngineStats st = engine.stats();
  const double decode_tps = st.decode_seconds > 0 ? double(st.generated_tokens) / st.decode_seconds : 0.0;
  const double prefill_tps = st.prefill_seconds > 0 ? double(st.prompt_tokens) / st.prefill_seconds : 0.0;
  const bool speculating = info.exit_layer > 0;
  return {
      {"device", info.device},            // where the passes run: cpu | cuda
      {"device_name", info.device_name},  // the GPU; "" on the CPU
      {"device_note", info.device_note},  // why not on a GPU, when [engine] device = "auto" left it on the CPU
      // Measured energy (NVML, on a GPU) or token-count estimates (energy.csv's method).
      {"energy_method", info.energy_method},
      {"energy_note", info.energy_note},
      {"energy_measured_wh", st.energy_measured_j / 3600.0},
      {"energy_windows", st.energy_windows},
      {"model", info.name},
      {"path", info.path},
      {"weight_type", info.weight_type},
      {"n_params", info.n_params},
      {"n_layer", info.n_layer},
      {"context", info.n_ctx},
      {"threads", info.threads},
      {"chat_template", info.chat_family.empty() ? json(nullptr) : json(info.chat_family)},
      // Jobs (one per generation: n samples of one prompt) and the running batch.
      {"jobs", st.jobs},
      {"jobs_failed", st.jobs_failed},
      {"jobs_cancelled", st.jobs_cancelled},  // every client left (counted in jobs_failed too)
      {"jobs_queued", st.queued},
      {"running_jobs", st.running_jobs},
      {"running_sequences", st.running_sequences},
      {"busy", st.running},
      {"samples", st.samples},
      {"prompt_tokens", st.prompt_tokens},
      {"generated_tokens", st.generated_tokens},
      {"prefill_tokens_per_s", prefill_tps},
      {"decode_tokens_per_s", decode_tps},
      {"steps", st.steps},              // batched forward passes
      {"preemptions", st.preemptions},  // jobs evicted for KV room, recomputed later
      // The paged KV cache now.
      {"kv_block_size", st.kv_block_size},
      {"kv_blocks_total", st.kv_blocks_total},
      {"kv_blocks_used", st.kv_blocks_used},
      {"kv_blocks_free", std::max(0, st.kv_blocks_total - st.kv_blocks_used)},
      {"kv_bytes_per_token", st.kv_bytes_per_token},
      {"kv_bytes_in_use", st.kv_bytes_in_use},
      {"kv_waste", st.kv_waste},  // idle slots in the used blocks, as a fraction of them
      // Speculation: with it off nothing is drafted and tokens_per_full_pass is about 1
      // (a prompt's pass gives each of its samples a token); 0 before any pass.
      {"full_passes", st.full_passes},
      {"drafted", st.drafted},
      {"accepted", st.accepted},
      {"draft_acceptance_rate", st.draft_acceptance_rate()},
      {"tokens_per_full_pass", st.tokens_per_full_pass()},
      {"speculation",
       {{"enabled", speculating},
        {"exit_layer", info.exit_layer},  // 0: off
        {"draft_tokens", speculating ? info.draft_tokens : 0},
        {"early_exit_only", speculating && info.early_exit_only}}},
  };
}

json engine_model_json(const engine::Engine& engine, const std::string& id) {
  return {{"id", id}, {"object", "model"}, {"created", engine.info().loaded_at}, {"owned_by", "reprise-engine"}};
}

}  // namespace reprise
