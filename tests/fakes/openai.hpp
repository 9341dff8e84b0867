#pragma once
// The OpenAI side of the fake, with no I/O: request validation, text sampling, usage
// accounting, and the JSON bodies and SSE events of each model endpoint.
#include <array>
#include <functional>
#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "state.hpp"

namespace reprise::fake {

// The process-global RNG: one draw seeds each sampled choice, so every call (and every
// choice of a call) differs, yet a whole run is reproducible from --seed.
class Sampler {
 public:
  explicit Sampler(uint64_t seed) : rng_(seed) {}
  uint64_t draw() {
    std::lock_guard lock(mu_);
    return rng_();
  }

 private:
  std::mutex mu_;
  std::mt19937_64 rng_;
};

// What a model endpoint answers: a JSON body, or (stream) the SSE events to send,
// each a complete "data: ...\n\n" text ending with "data: [DONE]\n\n".
struct Reply {
  unsigned status = 200;
  ojson body;
  bool stream = false;
  std::vector<std::string> events;
  std::vector<bool> paced;  // per event: it starts a new round of tokens (simulated pacing)
  uint64_t samples = 0;  // choices generated
  int64_t prompt_tokens = 0;  // as the usage reports them
  int64_t completion_tokens = 0;
  int64_t longest_choice = 0;  // the most completion tokens of one choice
  std::array<uint32_t, game24::kKinds> kinds{};  // simulate mode: prompts, by what they ask
};

// An OpenAI-shaped error reply; empty param or code become null.
Reply error_reply(unsigned status, std::string_view type, std::string_view message,
                  std::string_view param = {}, std::string_view code = {});

// What one call needs besides its body.
struct CallContext {
  uint64_t id;       // the request counter: ids are chatcmpl-fake-<id>
  int64_t created;   // unix time
  int64_t min_words;
  int64_t max_words;
  Sampler& sampler;
  bool simulate = false;  // Game of 24 prompts get the simulated model, usage counts GPT-like tokens
  // The answer-shape knobs of Settings (chat; finish_reason for completions too).
  bool rich = false;
  std::string tool_calls = "off";
  std::optional<std::string> finish_reason;
  int64_t finish_reason_choice = -1;
};

// The word helpers the other dialects' fakes share with chat.
// Words in `s` (the fake's token count of a prompt).
int64_t count_words(std::string_view s);
// Splits text as a stream sends it: each word with the blank before it.
std::vector<std::string> word_pieces(const std::string& text);
// A fresh answer of min_words..max_words words from the word list, one token each,
// drawn as an unseeded chat choice is.
std::string sample_text(const CallContext& ctx);

Reply chat_completions(const json& req, const CallContext& ctx);
Reply completions(const json& req, const CallContext& ctx);
Reply embeddings(const json& req);
Reply list_models();
Reply get_model(std::string_view id);

// For the other dialects' fakes: one choice's text, sampled as a chat choice without
// seed is (a draw from the global RNG; min_words..max_words words, cut at max_tokens),
// with its stream pieces (each word with the blank before it).
struct SampledText {
  std::string text;
  std::vector<std::string> pieces;
  bool truncated = false;  // cut at max_tokens
};
SampledText sample_text(const CallContext& ctx, std::optional<int64_t> max_tokens);
// The arguments a model writes for a tool: an object with value() for each required
// property of its JSON schema (`schema`: {"required": [...]}, anything else gives {}).
ojson required_strings(const json& schema, const std::function<std::string()>& value);

// The SSE events a stream sends under the "malformed" knob.
std::vector<std::string> malformed_events();

}  // namespace reprise::fake
