#include "state.hpp"

#include <limits>

namespace reprise::fake {

ojson to_json(const Settings& s) {
  ojson j;
  j["fail_next"] = s.fail_next;
  j["fail_status"] = s.fail_status;
  j["retry_after"] = s.retry_after ? ojson(*s.retry_after) : ojson(nullptr);
  j["retry_after_ms"] = s.retry_after_ms ? ojson(*s.retry_after_ms) : ojson(nullptr);
  j["latency_ms"] = s.latency_ms;
  j["chunk_delay_ms"] = s.chunk_delay_ms;
  j["stall_after_chunks"] = s.stall_after_chunks;
  j["reset_after_chunks"] = s.reset_after_chunks;
  j["malformed"] = s.malformed;
  j["min_words"] = s.min_words;
  j["max_words"] = s.max_words;
  j["simulate"] = s.simulate_game24 ? "game24" : "off";
  j["sim_first_token_ms"] = s.sim_first_token_ms;
  j["sim_ms_per_token"] = s.sim_ms_per_token;
  j["rich"] = s.rich;
  j["tool_calls"] = s.tool_calls;
  j["finish_reason"] = s.finish_reason ? ojson(*s.finish_reason) : ojson(nullptr);
  j["finish_reason_choice"] = s.finish_reason_choice;
  return j;
}

namespace {

constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();

// A header value must not smuggle in CR, LF or other control characters.
bool header_safe(const std::string& v) {
  for (unsigned char c : v)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  return true;
}

// Applies one control field to s; returns an error message when the value is unfit.
std::optional<std::string> apply(Settings& s, const std::string& key, const json& v) {
  auto integer = [&](int64_t& out, int64_t lo, int64_t hi) -> std::optional<std::string> {
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi)) ||
        v.get<int64_t>() < lo || v.get<int64_t>() > hi)
      return key + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    out = v.get<int64_t>();
    return std::nullopt;
  };
  if (key == "fail_next") return integer(s.fail_next, 0, kMaxInt);
  if (key == "fail_status") return integer(s.fail_status, 400, 599);
  if (key == "latency_ms") return integer(s.latency_ms, 0, 3'600'000);
  if (key == "chunk_delay_ms") return integer(s.chunk_delay_ms, 0, 3'600'000);
  if (key == "stall_after_chunks") return integer(s.stall_after_chunks, -1, kMaxInt);
  if (key == "reset_after_chunks") return integer(s.reset_after_chunks, -1, kMaxInt);
  if (key == "min_words") return integer(s.min_words, 0, 4096);
  if (key == "max_words") return integer(s.max_words, 0, 4096);
  if (key == "sim_first_token_ms") return integer(s.sim_first_token_ms, 0, 3'600'000);
  if (key == "sim_ms_per_token") return integer(s.sim_ms_per_token, 0, 3'600'000);
  if (key == "simulate") {
    if (v != "game24" && v != "off") return "simulate must be \"game24\" or \"off\"";
    s.simulate_game24 = v == "game24";
    return std::nullopt;
  }
  if (key == "retry_after") {
    if (v.is_null()) s.retry_after.reset();
    else if (v.is_string() && header_safe(v.get_ref<const std::string&>())) s.retry_after = v.get<std::string>();
    else return "retry_after must be null or a string without control characters";
    return std::nullopt;
  }
  if (key == "retry_after_ms") {
    if (v.is_null()) {
      s.retry_after_ms.reset();
      return std::nullopt;
    }
    int64_t ms = 0;
    auto err = integer(ms, 0, kMaxInt);
    if (!err) s.retry_after_ms = ms;
    return err;
  }
  if (key == "finish_reason_choice") return integer(s.finish_reason_choice, -1, 127);
  if (key == "rich") {
    if (!v.is_boolean()) return "rich must be a boolean";
    s.rich = v.get<bool>();
    return std::nullopt;
  }
  if (key == "tool_calls") {
    if (v != "off" && v != "function" && v != "custom" && v != "both")
      return "tool_calls must be \"off\", \"function\", \"custom\" or \"both\"";
    s.tool_calls = v.get<std::string>();
    return std::nullopt;
  }
  if (key == "finish_reason") {
    if (v.is_null()) s.finish_reason.reset();
    else if (v.is_string() && !v.get_ref<const std::string&>().empty()) s.finish_reason = v.get<std::string>();
    else return "finish_reason must be null or a non-empty string";
    return std::nullopt;
  }
  if (key == "malformed") {
    if (!v.is_boolean()) return "malformed must be a boolean";
    s.malformed = v.get<bool>();
    return std::nullopt;
  }
  return "unknown control field " + key;  // a typo in a test should not pass silently
}

}  // namespace

std::pair<uint64_t, Settings> State::begin_call(std::string_view path, RequestRecord rec) {
  std::lock_guard lock(mu_);
  auto it = calls_by_path_.find(path);
  if (it == calls_by_path_.end()) it = calls_by_path_.emplace(std::string(path), 0).first;
  ++it->second;
  last_ = std::move(rec);
  return {++calls_, settings_};
}

bool State::take_failure() {
  std::lock_guard lock(mu_);
  if (settings_.fail_next <= 0) return false;
  --settings_.fail_next;
  return true;
}

std::optional<ControlError> State::control(const json& patch) {
  std::lock_guard lock(mu_);
  Settings next = settings_;
  for (const auto& [key, value] : patch.items())
    if (auto err = apply(next, key, value)) return ControlError{key, *err};
  if (next.min_words > next.max_words)
    return ControlError{"min_words", "min_words must not exceed max_words"};
  settings_ = next;
  return std::nullopt;
}

Settings State::settings() const {
  std::lock_guard lock(mu_);
  return settings_;
}

void State::reset() {
  std::lock_guard lock(mu_);
  settings_ = defaults_;
  calls_ = 0;
  calls_by_path_.clear();
  last_.reset();
  samples = 0;
  completed_streams = 0;
  connections = 0;
  prompt_tokens = 0;
  completion_tokens = 0;
  for (auto& n : calls_by_kind) n = 0;
}

ojson State::stats() const {
  std::lock_guard lock(mu_);
  ojson j;
  j["calls"] = calls_;
  j["calls_by_path"] = ojson::object();
  for (const auto& [path, n] : calls_by_path_) j["calls_by_path"][path] = n;
  j["samples"] = samples.load();
  j["active_streams"] = active_streams.load();
  j["completed_streams"] = completed_streams.load();
  j["connections"] = connections.load();
  j["prompt_tokens"] = prompt_tokens.load();
  j["completion_tokens"] = completion_tokens.load();
  ojson& kinds = j["calls_by_kind"] = ojson::object();
  for (size_t k = 0; k < game24::kKinds; ++k) kinds[std::string(game24::kKindNames[k])] = calls_by_kind[k].load();
  if (last_) {
    ojson& r = j["last_request"];
    r["method"] = last_->method;
    r["target"] = last_->target;
    r["headers"] = ojson::object();
    for (const auto& [name, value] : last_->headers) {
      ojson& h = r["headers"][name];
      h = h.is_string() ? h.get<std::string>() + ", " + value : value;  // repeats joined
    }
    if (last_->body.empty()) {
      r["body"] = nullptr;
    } else {
      r["body"] = ojson::parse(last_->body, nullptr, false);
      if (r["body"].is_discarded()) r["body"] = last_->body;
    }
  } else {
    j["last_request"] = nullptr;
  }
  return j;
}

}  // namespace reprise::fake
