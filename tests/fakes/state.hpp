#pragma once
// The shared state of the fake: the knobs set through /_fake/control and the counters
// read through /_fake/stats. Every member is safe to use from several io threads.
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "game24.hpp"

namespace reprise::fake {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;  // responses keep OpenAI's field order

// Behaviour knobs. /_fake/control merges into them, /_fake/reset restores the defaults
// (which are these values, with latency_ms, chunk_delay_ms, simulate and the sim_*
// delays taken from the CLI).
struct Settings {
  int64_t fail_next = 0;      // the next N /v1 requests fail...
  int64_t fail_status = 500;  // ...with this status
  std::optional<std::string> retry_after;   // Retry-After on injected failures
  std::optional<int64_t> retry_after_ms;    // retry-after-ms on injected failures
  int64_t latency_ms = 0;                   // wait before the response headers
  int64_t chunk_delay_ms = 0;               // wait between SSE events
  int64_t stall_after_chunks = -1;          // streams hang after K events (-1: off)
  int64_t reset_after_chunks = -1;          // streams RST after K events (-1: off)
  bool malformed = false;                   // truncated bodies, broken SSE
  int64_t min_words = 4;                    // completion length range, in words
  int64_t max_words = 24;
  bool simulate_game24 = false;             // the simulated Game of 24 model answers its prompts
  int64_t sim_first_token_ms = 300;         // simulate mode: time to the first token...
  int64_t sim_ms_per_token = 10;            // ...and per token after it
  // What the real APIs send beyond text (chat): see tests/fakes/README.md.
  bool rich = false;                        // reasoning_content, annotations, audio, usage details, service_tier...
  std::string tool_calls = "off";           // "function", "custom", "both": a tool-call-only answer
  std::optional<std::string> finish_reason; // replaces the finish_reason of...
  int64_t finish_reason_choice = -1;        // ...this choice (-1: every choice)
};

ojson to_json(const Settings& s);

// What went wrong in a control request: the offending field and a message.
struct ControlError {
  std::string param;
  std::string message;
};

// One /v1 request as /_fake/stats shows it.
struct RequestRecord {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;
};

class State {
 public:
  explicit State(Settings defaults) : defaults_(defaults), settings_(defaults) {}

  // Counts one /v1 request, remembers it as the last one, and returns its id (the
  // number in req_fake_<id>) with a snapshot of the settings it runs under.
  std::pair<uint64_t, Settings> begin_call(std::string_view path, RequestRecord rec);

  // Consumes one injected failure; true when this request must fail.
  bool take_failure();

  // Merges a /_fake/control object; on error nothing changes.
  std::optional<ControlError> control(const json& patch);
  Settings settings() const;
  void reset();
  ojson stats() const;

  std::atomic<uint64_t> samples{0};
  std::atomic<int64_t> active_streams{0};  // a gauge: reset() leaves it alone
  std::atomic<uint64_t> completed_streams{0};
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> prompt_tokens{0};      // the usage of 200 answers, summed
  std::atomic<uint64_t> completion_tokens{0};
  std::array<std::atomic<uint64_t>, game24::kKinds> calls_by_kind{};  // prompts, simulate mode

 private:
  mutable std::mutex mu_;
  const Settings defaults_;
  Settings settings_;
  uint64_t calls_ = 0;
  std::map<std::string, uint64_t, std::less<>> calls_by_path_;
  std::optional<RequestRecord> last_;
};

}  // namespace reprise::fake
