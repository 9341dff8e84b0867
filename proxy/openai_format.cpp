// The OpenAI wire format of cached samples (see openai_format.hpp). Everything here
// reads JSON that came from a store or an upstream stream, so every access is guarded:
// a malformed field degrades to its default, it never throws.
#include "proxy/openai_format.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <random>

namespace reprise::format {

namespace {

// The logprobs arrays that are concatenated, per endpoint.
constexpr std::array<const char*, 2> kChatLogprobKeys = {"content", "refusal"};
constexpr std::array<const char*, 4> kCompletionLogprobKeys = {"tokens", "token_logprobs",
                                                               "top_logprobs", "text_offset"};

const json& null_json() {
  static const json kNull;
  return kNull;
}

// obj[key] when obj is an object that has it, else null: never throws, never inserts.
const json& field(const json& obj, const char* key) {
  if (!obj.is_object()) return null_json();
  auto it = obj.find(key);
  return it == obj.end() ? null_json() : *it;
}

// The string at obj[key], or "" when absent or not a string.
std::string_view string_field(const json& obj, const char* key) {
  const json& value = field(obj, key);
  return value.is_string() ? std::string_view(value.get_ref<const std::string&>()) : std::string_view();
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Appends the arrays of `incoming` under `keys` to `into` (an object, created on first
// use). A key that arrives as null is recorded as null unless already present, so a
// stored {"content":[...],"refusal":null} comes back with both keys.
template <size_t N>
void merge_logprobs(json& into, const json& incoming, const std::array<const char*, N>& keys) {
  if (!incoming.is_object()) return;
  if (!into.is_object()) into = json::object();
  for (const char* key : keys) {
    auto it = incoming.find(key);
    if (it == incoming.end()) continue;
    json& slot = into[key];
    if (it->is_array()) {
      if (!slot.is_array()) slot = json::array();
      slot.insert(slot.end(), it->begin(), it->end());
    }
  }
}

// Keys whose first value stands: they name a thing (the speaker, a call, its kind),
// so a repeat is not a piece to append.
bool identifying_key(std::string_view key) { return key == "role" || key == "id" || key == "type" || key == "index"; }

void merge_delta(json& into, const json& delta);

// Array pieces: an entry with an integer "index" (OpenRouter's reasoning_details, say)
// merges into the entry with the same index, as the SDKs do; others are appended.
void merge_array(json& into, const json& pieces) {
  for (const json& piece : pieces) {
    const json& index = field(piece, "index");
    if (index.is_number_integer()) {
      auto same = std::find_if(into.begin(), into.end(), [&](const json& e) { return field(e, "index") == index; });
      if (same != into.end()) {
        merge_delta(*same, piece);
        continue;
      }
    }
    into.push_back(piece);
  }
}

// Merges one delta object into what was accumulated (see ChoiceAccumulator).
void merge_delta(json& into, const json& delta) {
  for (auto& [key, value] : delta.items()) {
    auto it = into.find(key);
    if (it == into.end() || it->is_null()) {
      into[key] = value;  // a first value (null included: the field was sent)
      continue;
    }
    if (value.is_null() || identifying_key(key)) continue;
    if (it->is_string() && value.is_string()) it->get_ref<std::string&>() += value.get_ref<const std::string&>();
    else if (it->is_object() && value.is_object()) merge_delta(*it, value);
    else if (it->is_array() && value.is_array()) merge_array(*it, value);
    else *it = value;
  }
}

// Whether a delta value carries something of the answer (a token's worth).
bool carries_piece(const json& value) {
  if (value.is_string()) return !value.get_ref<const std::string&>().empty();
  if (value.is_object() || value.is_array()) return !value.empty();
  return !value.is_null();
}

// Merges the tool-call deltas of one chunk by their "index"; true when it had any.
bool merge_tool_calls(json& tool_calls, std::vector<json>& indices, const json& deltas) {
  if (!deltas.is_array() || deltas.empty()) return false;
  for (size_t position = 0; position < deltas.size(); ++position) {
    const json& delta = deltas[position];
    if (!delta.is_object()) continue;
    // OpenAI always sends "index"; a delta without one is taken by its position.
    const json& given = field(delta, "index");
    json index = given.is_number_integer() ? given : json(position);
    auto it = std::find(indices.begin(), indices.end(), index);
    if (it == indices.end()) {
      indices.push_back(index);
      tool_calls.push_back(json::object());
      it = indices.end() - 1;
    }
    json& call = tool_calls[size_t(it - indices.begin())];
    json rest = delta;
    rest.erase("index");  // stream-only: a non-streamed answer's calls have none
    merge_delta(call, rest);
  }
  return true;
}

// The delta fields with a meaning of their own; others merge generically.
bool chat_delta_key(std::string_view key) {
  return key == "role" || key == "content" || key == "refusal" || key == "tool_calls";
}

// A chunk choice's fields that the accumulator handles itself; others are extras.
bool chunk_choice_key(Endpoint endpoint, std::string_view key) {
  if (key == "index" || key == "logprobs" || key == "finish_reason") return true;
  return endpoint == Endpoint::chat_completions ? key == "delta" : key == "text";
}

}  // namespace

// ---------------------------------------------------------------------------------
// ChoiceAccumulator

ChoiceAccumulator::ChoiceAccumulator(Endpoint endpoint) : endpoint_(endpoint) {}

void ChoiceAccumulator::add(const json& chunk_choice) {
  if (!chunk_choice.is_object()) return;
  bool piece = false;
  if (endpoint_ == Endpoint::chat_completions) {
    const json& delta = field(chunk_choice, "delta");
    if (delta.is_object()) {
      // The known fields only when well-typed: a malformed one is dropped, not kept.
      if (const json& role = field(delta, "role"); role.is_string() && !role.get_ref<const std::string&>().empty())
        merge_delta(message_, {{"role", role}});
      for (const char* key : {"content", "refusal"}) {
        auto it = delta.find(key);
        if (it == delta.end() || !(it->is_string() || it->is_null())) continue;
        merge_delta(message_, {{key, *it}});
        piece |= carries_piece(*it);
      }
      piece |= merge_tool_calls(tool_calls_, tool_call_indices_, field(delta, "tool_calls"));
      for (auto& [key, value] : delta.items()) {
        if (chat_delta_key(key)) continue;
        if (key == "function_call" && !value.is_object()) continue;
        merge_delta(message_, {{key, value}});
        piece |= carries_piece(value);
      }
    }
    merge_logprobs(logprobs_, field(chunk_choice, "logprobs"), kChatLogprobKeys);
  } else {
    if (auto text = string_field(chunk_choice, "text"); !text.empty()) {
      text_ += text;
      piece = true;
    }
    merge_logprobs(logprobs_, field(chunk_choice, "logprobs"), kCompletionLogprobKeys);
  }
  for (auto& [key, value] : chunk_choice.items()) {
    if (chunk_choice_key(endpoint_, key)) continue;
    if (!value.is_null() || !extra_.contains(key)) extra_[key] = value;  // the latest that says something
  }
  if (auto reason = string_field(chunk_choice, "finish_reason"); !reason.empty()) finish_reason_ = reason;
  if (piece) ++pieces_;
}

json ChoiceAccumulator::choice() const {
  json finish = finish_reason_.empty() ? json(nullptr) : json(finish_reason_);
  json out = extra_;
  out["logprobs"] = logprobs_;
  out["finish_reason"] = std::move(finish);
  if (endpoint_ != Endpoint::chat_completions) {
    out["text"] = text_;
    return out;
  }
  json message = message_;
  if (!message.contains("role")) message["role"] = "assistant";
  if (!tool_calls_.empty()) message["tool_calls"] = tool_calls_;
  // A non-streamed answer always has content: null when the model only called tools
  // or refused, "" when it said nothing at all. A stream that sent it keeps it as sent.
  if (!message.contains("content")) {
    const json& refusal = field(message, "refusal");
    bool other = !tool_calls_.empty() || field(message, "function_call").is_object() ||
                 (refusal.is_string() && !refusal.get_ref<const std::string&>().empty());
    message["content"] = other ? json(nullptr) : json("");
  }
  out["message"] = std::move(message);
  return out;
}

bool normal_finish_reason(std::string_view reason) {
  return reason == "stop" || reason == "length" || reason == "tool_calls" || reason == "function_call" ||
         reason == "content_filter";
}

// ---------------------------------------------------------------------------------
// replay_choice

namespace {

// The logprobs that replay chunks carry. Every chunk that carries some is the stored
// object's shape (its known keys, arrays emptied, nulls kept) with its own entries
// filled in, so accumulating the chunks rebuilds the stored object exactly. What no
// chunk carried (and the shape itself, when no chunk carried anything) rides on the
// final chunk.
class LogprobsReplay {
 public:
  template <size_t N>
  LogprobsReplay(const json& logprobs, const std::array<const char*, N>& keys) {
    if (!logprobs.is_object()) return;
    frame_ = json::object();
    for (const char* key : keys) {
      auto it = logprobs.find(key);
      if (it == logprobs.end()) continue;
      frame_[key] = it->is_array() ? json::array() : json(nullptr);
      if (it->is_array() && !it->empty()) pending_[key] = *it;
    }
  }

  // The logprobs of a chunk that carries `entries` ({key: [entry, ...]}).
  json carry(const json& entries) {
    json out = frame_;
    for (auto& [key, value] : entries.items()) out[key] = value;
    sent_ = true;
    return out;
  }
  // Carries everything still pending for `key` (the fallback when the entries cannot
  // be aligned with pieces).
  json carry_all(const char* key) {
    json entries = {{key, pending_.value(key, json::array())}};
    pending_.erase(key);
    return carry(entries);
  }
  void done(const char* key) { pending_.erase(key); }
  const json& pending(const char* key) const { return field(pending_, key); }

  // Everything not carried yet (and the shape, when nothing was carried), once;
  // null when there is nothing left.
  json rest() {
    if (frame_.is_null() || (sent_ && pending_.empty())) return nullptr;
    json out = carry(pending_);
    pending_ = json::object();
    return out;
  }

 private:
  json frame_;                       // null when the choice had no logprobs
  json pending_ = json::object();    // key -> entries not carried yet
  bool sent_ = false;
};

// The strings of `entries[i][token_key]` when every entry has one and they concatenate
// to `text` exactly: then each entry can carry its own piece.
std::optional<std::vector<std::string>> aligned_tokens(const json& entries, std::string_view text,
                                                       const char* token_key) {
  if (!entries.is_array() || entries.empty()) return std::nullopt;
  std::vector<std::string> tokens;
  std::string joined;
  for (const json& entry : entries) {
    const json& token = entry.is_string() ? entry : field(entry, token_key);
    if (!token.is_string()) return std::nullopt;
    tokens.push_back(token.get<std::string>());
    joined += tokens.back();
  }
  if (joined != text) return std::nullopt;
  return tokens;
}

json chat_chunk(json delta, json logprobs = nullptr) {
  return {{"delta", std::move(delta)}, {"logprobs", std::move(logprobs)}, {"finish_reason", nullptr}};
}

// Chunks for the content or the refusal text of a chat message: one per logprobs entry
// when they align with the text, else one per token piece with all entries on the first.
void replay_chat_text(const char* key, std::string_view text, LogprobsReplay& lp,
                      std::vector<json>& out) {
  if (auto tokens = aligned_tokens(lp.pending(key), text, "token")) {
    const json entries = lp.pending(key);
    for (size_t i = 0; i < tokens->size(); ++i)
      out.push_back(chat_chunk({{key, (*tokens)[i]}}, lp.carry({{key, json::array({entries[i]})}})));
    lp.done(key);
    return;
  }
  bool first = true;
  for (std::string_view piece : token_pieces(text)) {
    json logprobs = first && !lp.pending(key).is_null() ? lp.carry_all(key) : json(nullptr);
    out.push_back(chat_chunk({{key, piece}}, std::move(logprobs)));
    first = false;
  }
}

// One chunk per tool call, whole (function and custom calls alike, every field the
// call has), numbered by its position: the stream a client sees when the upstream
// sends a call in one piece.
void replay_tool_calls(const json& calls, std::vector<json>& out) {
  if (!calls.is_array()) return;
  for (size_t position = 0; position < calls.size(); ++position) {
    const json& call = calls[position];
    if (!call.is_object()) continue;
    json entry = call;
    entry["index"] = position;
    out.push_back(chat_chunk({{"tool_calls", json::array({std::move(entry)})}}));
  }
}

json finish_reason_of(const json& choice) {
  const json& reason = field(choice, "finish_reason");
  return reason.is_string() ? reason : json(nullptr);
}

// The last chunk: the finish_reason, logprobs not carried yet, and the choice's own
// other fields (which an accumulator takes as they are).
json final_chunk(Endpoint endpoint, const json& choice, json body, json logprobs) {
  json out = choice.is_object() ? choice : json::object();
  for (auto it = out.begin(); it != out.end();) {
    if (chunk_choice_key(endpoint, it.key()) || it.key() == "message") it = out.erase(it);
    else ++it;
  }
  for (auto& [key, value] : body.items()) out[key] = std::move(value);
  out["logprobs"] = std::move(logprobs);
  out["finish_reason"] = finish_reason_of(choice);
  return out;
}

// Message fields streamed in token pieces when they are text, as reasoning models
// stream them; every other field (but the ones replay_chat handles) goes whole in the
// first chunk.
constexpr std::array<const char*, 2> kReasoningKeys = {"reasoning_content", "reasoning"};

bool streamed_in_pieces(std::string_view key, const json& value) {
  if (key == "role" || key == "content" || key == "tool_calls" || key == "function_call") return true;
  if (key == "refusal") return value.is_string() && !value.get_ref<const std::string&>().empty();
  for (const char* reasoning : kReasoningKeys)
    if (key == reasoning) return value.is_string() && !value.get_ref<const std::string&>().empty();
  return false;
}

std::vector<json> replay_chat(const json& choice) {
  const json& message = field(choice, "message");
  std::string_view role = string_field(message, "role");
  json first = {{"role", role.empty() ? "assistant" : role}};
  // Content opens as "" when the answer has text and as null when it has none (only
  // tool calls, a refusal): as the upstream streamed it, so that a client rebuilding
  // the message gets the one a live stream gave.
  const bool null_content = message.is_object() && message.contains("content") && message["content"].is_null();
  first["content"] = null_content ? json(nullptr) : json("");
  // The message's other fields, whole: the null ones open the stream (refusal: null,
  // as OpenAI's first delta has it), the others follow the text, as OpenAI streams
  // annotations and audio after it.
  json others = json::object();
  if (message.is_object())
    for (auto& [key, value] : message.items())
      if (!streamed_in_pieces(key, value)) (value.is_null() ? first : others)[key] = value;
  std::vector<json> out;
  out.push_back(chat_chunk(std::move(first)));
  for (const char* key : kReasoningKeys)
    for (std::string_view piece : token_pieces(string_field(message, key))) out.push_back(chat_chunk({{key, piece}}));
  LogprobsReplay lp(field(choice, "logprobs"), kChatLogprobKeys);
  replay_chat_text("content", string_field(message, "content"), lp, out);
  replay_chat_text("refusal", string_field(message, "refusal"), lp, out);
  if (!others.empty()) out.push_back(chat_chunk(std::move(others)));
  replay_tool_calls(field(message, "tool_calls"), out);
  if (const json& call = field(message, "function_call"); call.is_object())
    out.push_back(chat_chunk({{"function_call", call}}));
  out.push_back(final_chunk(Endpoint::chat_completions, choice, {{"delta", json::object()}}, lp.rest()));
  return out;
}

json text_chunk(std::string_view text, json logprobs = nullptr) {
  return {{"text", text}, {"logprobs", std::move(logprobs)}, {"finish_reason", nullptr}};
}

// The per-token logprobs of completions when every array lines up with the tokens.
bool completion_logprobs_aligned(const json& logprobs, size_t count) {
  for (const char* key : kCompletionLogprobKeys) {
    const json& value = field(logprobs, key);
    if (!value.is_null() && (!value.is_array() || value.size() != count)) return false;
  }
  return true;
}

std::vector<json> replay_completion(const json& choice) {
  std::string_view text = string_field(choice, "text");
  const json& logprobs = field(choice, "logprobs");
  LogprobsReplay lp(logprobs, kCompletionLogprobKeys);
  std::vector<json> out;
  auto tokens = aligned_tokens(field(logprobs, "tokens"), text, "");
  if (tokens && completion_logprobs_aligned(logprobs, tokens->size())) {
    for (size_t i = 0; i < tokens->size(); ++i) {
      json entries = json::object();
      for (const char* key : kCompletionLogprobKeys)
        if (field(logprobs, key).is_array()) entries[key] = json::array({logprobs[key][i]});
      out.push_back(text_chunk((*tokens)[i], lp.carry(entries)));
    }
    for (const char* key : kCompletionLogprobKeys) lp.done(key);
  } else {
    bool first = true;
    for (std::string_view piece : token_pieces(text)) {
      out.push_back(text_chunk(piece, first ? lp.rest() : json(nullptr)));
      first = false;
    }
  }
  out.push_back(final_chunk(Endpoint::completions, choice, {{"text", ""}}, lp.rest()));
  return out;
}

}  // namespace

std::vector<json> replay_choice(Endpoint endpoint, const json& choice) {
  return endpoint == Endpoint::chat_completions ? replay_chat(choice) : replay_completion(choice);
}

// ---------------------------------------------------------------------------------
// Pieces, weights and usage

std::vector<std::string_view> token_pieces(std::string_view text) {
  std::vector<std::string_view> pieces;
  size_t start = 0;
  // A piece ends where whitespace follows a non-space: the whitespace opens the next
  // word's piece, as BPE vocabularies attach a leading space to the word.
  for (size_t i = 1; i < text.size(); ++i) {
    if (is_space(text[i]) && !is_space(text[i - 1])) {
      pieces.push_back(text.substr(start, i - start));
      start = i;
    }
  }
  if (start < text.size()) pieces.push_back(text.substr(start));
  return pieces;
}

uint64_t choice_weight(Endpoint endpoint, const json& choice) {
  uint64_t weight = 0;
  if (endpoint == Endpoint::chat_completions) {
    const json& message = field(choice, "message");
    weight += token_pieces(string_field(message, "content")).size();
    weight += token_pieces(string_field(message, "refusal")).size();
    for (const char* key : kReasoningKeys) weight += token_pieces(string_field(message, key)).size();
    if (const json& calls = field(message, "tool_calls"); calls.is_array())
      for (const json& call : calls) {
        weight += token_pieces(string_field(field(call, "function"), "arguments")).size();
        weight += token_pieces(string_field(field(call, "custom"), "input")).size();
      }
    weight += token_pieces(string_field(field(message, "function_call"), "arguments")).size();
  } else {
    weight += token_pieces(string_field(choice, "text")).size();
  }
  return std::max<uint64_t>(weight, 1);
}

std::vector<uint32_t> split_proportionally(uint64_t total, const std::vector<uint64_t>& weights) {
  using u128 = unsigned __int128;  // total * weight overflows 64 bits for large inputs
  std::vector<uint32_t> shares(weights.size(), 0);
  if (weights.empty()) return shares;
  u128 sum = 0;
  for (uint64_t w : weights) sum += std::max<uint64_t>(w, 1);
  std::vector<u128> remainders(weights.size());
  uint64_t given = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    u128 scaled = u128(total) * std::max<uint64_t>(weights[i], 1);
    shares[i] = static_cast<uint32_t>(std::min<u128>(scaled / sum, std::numeric_limits<uint32_t>::max()));
    remainders[i] = scaled % sum;
    given += shares[i];
  }
  // The floors leave fewer than weights.size() tokens: one each to the largest
  // remainders, the lower index first on ties (stable sort keeps index order).
  std::vector<size_t> order(weights.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return remainders[a] > remainders[b]; });
  for (size_t k = 0; k < order.size() && given < total; ++k, ++given) ++shares[order[k]];
  return shares;
}

namespace {

// The usage fields split over a call's samples and summed again: completion_tokens_details
// and its kind ("completion_*" objects). Everything else belongs to the whole call.
bool per_completion(std::string_view key, const json& value) {
  return key.starts_with("completion_") && value.is_object();
}

// The samples' usage_extra put together again (see usage_of).
json merged_usage_extra(const std::vector<const cache::Sample*>& samples) {
  json out = json::object();
  for (const cache::Sample* sample : samples) {
    if (sample == nullptr || !sample->usage_extra.is_object()) continue;
    for (auto& [key, value] : sample->usage_extra.items()) {
      auto it = out.find(key);
      if (it == out.end()) {
        out[key] = value;
        continue;
      }
      if (!per_completion(key, value) || !it->is_object()) continue;
      for (auto& [name, count] : value.items()) {
        json& slot = (*it)[name];
        if (slot.is_null()) slot = count;
        else if (slot.is_number_unsigned() && count.is_number_unsigned())
          slot = slot.get<uint64_t>() + count.get<uint64_t>();
      }
    }
  }
  return out;
}

bool has_usage_extra(const std::vector<const cache::Sample*>& samples) {
  for (const cache::Sample* sample : samples)
    if (sample != nullptr && sample->usage_extra.is_object() && !sample->usage_extra.empty()) return true;
  return false;
}

// The response_extra of an answer: the first sample's that has one.
const json& response_extra_of(const std::vector<const cache::Sample*>& samples) {
  for (const cache::Sample* sample : samples)
    if (sample != nullptr && sample->response_extra.is_object() && !sample->response_extra.empty())
      return sample->response_extra;
  return null_json();
}

// The top-level fields every answer is rebuilt with (and a chunk's per-event padding).
bool rebuilt_field(std::string_view key) {
  return key == "id" || key == "object" || key == "created" || key == "model" || key == "choices" ||
         key == "usage" || key == "system_fingerprint" || key == "obfuscation";
}

}  // namespace

json usage_of(Endpoint endpoint, const std::vector<const cache::Sample*>& samples) {
  uint64_t prompt = 0;
  uint64_t completion = 0;
  for (const cache::Sample* sample : samples) {
    if (sample == nullptr) continue;
    prompt = std::max<uint64_t>(prompt, sample->prompt_tokens);
    completion += sample->completion_tokens;
  }
  json usage = endpoint == Endpoint::embeddings
                   ? json{{"prompt_tokens", prompt}, {"total_tokens", prompt}}
                   : json{{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
  if (has_usage_extra(samples)) {
    json extra = merged_usage_extra(samples);
    for (auto& [key, value] : extra.items())
      if (!usage.contains(key)) usage[key] = std::move(value);
  }
  return usage;
}

std::vector<json> split_usage_extra(const json& usage, const std::vector<uint32_t>& completion_shares) {
  std::vector<json> out(completion_shares.size());
  if (!usage.is_object() || completion_shares.empty()) return out;
  json call = json::object();  // the fields beyond the three counts
  for (auto& [key, value] : usage.items())
    if (key != "prompt_tokens" && key != "completion_tokens" && key != "total_tokens") call[key] = value;
  if (call.empty()) return out;
  for (json& extra : out) extra = call;
  const std::vector<uint64_t> weights(completion_shares.begin(), completion_shares.end());
  for (auto& [key, value] : call.items()) {
    if (!per_completion(key, value)) continue;
    for (auto& [name, count] : value.items()) {
      if (!count.is_number_unsigned()) continue;
      auto shares = split_proportionally(count.get<uint64_t>(), weights);
      for (size_t i = 0; i < out.size(); ++i) out[i][key][name] = shares[i];
    }
  }
  return out;
}

json response_extra_of(const json& answer) {
  if (!answer.is_object()) return nullptr;
  json out = json::object();
  for (auto& [key, value] : answer.items())
    if (!rebuilt_field(key)) out[key] = value;
  return out.empty() ? json(nullptr) : out;
}

// ---------------------------------------------------------------------------------
// Response bodies and chunks

std::string new_response_id(Endpoint endpoint) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id;
  id.reserve(40);
  id += endpoint == Endpoint::chat_completions ? "chatcmpl-" : "cmpl-";
  // Six bits of a draw per character, the two values past the alphabet's 62 skipped:
  // as uniform as a distribution object per character, at a tenth of the draws
  // (one id per answer, so it counted in a hit).
  int left = 24;
  while (left > 0) {
    for (uint64_t bits = rng(), n = 0; n < 10 && left > 0; ++n, bits >>= 6)
      if (const size_t v = bits & 63; v < kAlphabet.size()) {
        id += kAlphabet[v];
        --left;
      }
  }
  return id;
}

namespace {

std::string_view object_name(Endpoint endpoint, bool chunk) {
  if (endpoint == Endpoint::chat_completions) return chunk ? "chat.completion.chunk" : "chat.completion";
  return "text_completion";  // completions use the same name for chunks
}

json string_or_null(std::string_view value) {
  return value.empty() ? json(nullptr) : json(value);
}

}  // namespace

json completion_body(Endpoint endpoint, std::string_view id, int64_t created,
                     const std::vector<const cache::Sample*>& samples, std::string_view fallback_model) {
  std::string_view model;
  std::string_view fingerprint;
  json choices = json::array();
  for (const cache::Sample* sample : samples) {
    if (sample == nullptr) continue;
    if (choices.empty()) fingerprint = sample->system_fingerprint;
    if (model.empty()) model = sample->model;
    json choice = sample->choice.is_object() ? sample->choice : json::object();
    choice["index"] = choices.size();
    // The record keeps finish_reason beside the choice; fill it in if the choice lost it.
    if (!choice.contains("finish_reason") && !sample->finish_reason.empty())
      choice["finish_reason"] = sample->finish_reason;
    choices.push_back(std::move(choice));
  }
  json body = {{"id", id},
               {"object", object_name(endpoint, false)},
               {"created", created},
               {"model", model.empty() ? fallback_model : model},
               {"choices", std::move(choices)},
               {"usage", usage_of(endpoint, samples)},
               {"system_fingerprint", string_or_null(fingerprint)}};
  for (auto& [key, value] : response_extra_of(samples).items())
    if (!rebuilt_field(key)) body[key] = value;
  return body;
}

namespace {

json chunk_head(const ChunkHead& head) {
  json out = {{"id", head.id},
              {"object", object_name(head.endpoint, true)},
              {"created", head.created},
              {"model", head.model},
              {"system_fingerprint", string_or_null(head.system_fingerprint)}};
  if (head.extra.is_object())
    for (auto& [key, value] : head.extra.items())
      if (!rebuilt_field(key)) out[key] = value;
  return out;
}

// Appends `,"key":value` for each of `extra`'s fields that an answer is not rebuilt with.
void append_extra(std::string& out, const json& extra) {
  if (!extra.is_object()) return;
  for (auto& [key, value] : extra.items()) {
    if (rebuilt_field(key)) continue;
    out += ',';
    append_json_string(out, key);
    out += ':';
    out += value.dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

}  // namespace

json chunk(const ChunkHead& head, uint32_t index, const json& chunk_choice) {
  json out = chunk_head(head);
  json choice = chunk_choice.is_object() ? chunk_choice : json::object();
  choice["index"] = index;
  out["choices"] = json::array({std::move(choice)});
  if (head.include_usage) out["usage"] = nullptr;
  return out;
}

json usage_chunk(const ChunkHead& head, const json& usage) {
  json out = chunk_head(head);
  out["choices"] = json::array();
  out["usage"] = usage;
  return out;
}

std::string sse_event(const json& payload) {
  // replace: a stored string with invalid UTF-8 must not throw while serialising.
  return "data: " + payload.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

void ChunkEncoder::build(const ChunkHead& head) {
  if (built_ && model_ == head.model && fingerprint_ == head.system_fingerprint && extra_ == head.extra) return;
  // The fields of chunk(head, ...) around its "choices", written once per response
  // (by hand: nlohmann's initializer lists cost more than a whole replayed sample).
  prefix_ = "data: {\"choices\":[{\"index\":";
  suffix_ = "],\"created\":" + std::to_string(head.created) + ",\"id\":";
  append_json_string(suffix_, head.id);
  suffix_ += ",\"model\":";
  append_json_string(suffix_, head.model);
  suffix_ += ",\"object\":";
  append_json_string(suffix_, object_name(head.endpoint, true));
  suffix_ += ",\"system_fingerprint\":";
  if (head.system_fingerprint.empty()) suffix_ += "null";
  else append_json_string(suffix_, head.system_fingerprint);
  if (head.include_usage) suffix_ += ",\"usage\":null";
  append_extra(suffix_, head.extra);
  suffix_ += "}\n\n";
  model_ = head.model;
  fingerprint_ = head.system_fingerprint;
  extra_ = head.extra;
  built_ = true;
}

void ChunkEncoder::append_text(std::string& out, const ChunkHead& head, uint32_t index,
                               std::string_view chunk_choice) {
  build(head);
  out += prefix_;
  char digits[16];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, index).ptr);
  if (chunk_choice.size() > 2) {
    out += ',';
    out.append(chunk_choice.substr(1));  // its members and closing brace
  } else {
    out += '}';
  }
  out += suffix_;
}

void ChunkEncoder::append(std::string& out, const ChunkHead& head, uint32_t index, const json& chunk_choice) {
  if (!chunk_choice.is_object()) return append_text(out, head, index, "{}");
  json rest = chunk_choice;
  rest.erase("index");
  append_text(out, head, index, rest.dump(-1, ' ', false, json::error_handler_t::replace));
}

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  // Runs of characters that need no escape (nearly all of them) go in one append.
  size_t run = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (static_cast<unsigned char>(c) >= 0x20 && c != '"' && c != '\\') continue;
    out.append(text.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        out += "\\u00";
        out += kHex[(c >> 4) & 0xf];
        out += kHex[c & 0xf];
    }
  }
  out.append(text.data() + run, text.size() - run);
  out += '"';
}

const RenderedSample& rendered(Endpoint endpoint, const cache::Sample& sample) {
  return cache::rendered_once<RenderedSample>(sample, [&](RenderedSample& made) {
    json choice = sample.choice.is_object() ? sample.choice : json::object();
    choice.erase("index");
    if (!choice.contains("finish_reason") && !sample.finish_reason.empty())
      choice["finish_reason"] = sample.finish_reason;
    made.choice = choice.dump(-1, ' ', false, json::error_handler_t::replace);
    if (endpoint != Endpoint::embeddings)
      for (auto& piece : replay_choice(endpoint, sample.choice))
        made.pieces.push_back(piece.dump(-1, ' ', false, json::error_handler_t::replace));
  });
}

std::string completion_text(Endpoint endpoint, std::string_view id, int64_t created,
                            const std::vector<const cache::Sample*>& samples, std::string_view fallback_model) {
  std::string_view model;
  std::string_view fingerprint;
  // The rest by hand, appended in place: nlohmann's initializer lists cost more than
  // the rest of a hit's answer, and a temporary string per number added up too. The
  // strings come from parsed JSON, so they are valid UTF-8 already.
  auto number = [](std::string& out, uint64_t value) {
    char buf[24];
    out.append(buf, std::to_chars(buf, buf + sizeof buf, value).ptr);
  };
  std::string out;
  out.reserve(256 + 256 * samples.size());
  out += "{\"choices\":[";
  size_t index = 0;
  for (const cache::Sample* sample : samples) {
    if (sample == nullptr) continue;
    if (index == 0) fingerprint = sample->system_fingerprint;
    if (model.empty()) model = sample->model;
    const std::string& choice = rendered(endpoint, *sample).choice;
    if (index > 0) out += ',';
    out += "{\"index\":";
    number(out, index++);
    if (choice.size() > 2) {
      out += ',';
      out.append(choice, 1, std::string::npos);
    } else {
      out += '}';
    }
  }
  uint64_t prompt = 0, completion = 0;
  for (const cache::Sample* sample : samples) {
    if (sample == nullptr) continue;
    prompt = std::max<uint64_t>(prompt, sample->prompt_tokens);
    completion += sample->completion_tokens;
  }
  out += "],\"created\":";
  out += std::to_string(created);
  out += ",\"id\":";
  append_json_string(out, id);
  out += ",\"model\":";
  append_json_string(out, model.empty() ? fallback_model : model);
  out += ",\"object\":";
  append_json_string(out, object_name(endpoint, false));
  out += ",\"system_fingerprint\":";
  if (fingerprint.empty()) out += "null";
  else append_json_string(out, fingerprint);
  if (has_usage_extra(samples)) {
    out += ",\"usage\":";
    out += usage_of(endpoint, samples).dump(-1, ' ', false, json::error_handler_t::replace);
  } else {
    out += ",\"usage\":{\"completion_tokens\":";
    number(out, completion);
    out += ",\"prompt_tokens\":";
    number(out, prompt);
    out += ",\"total_tokens\":";
    number(out, prompt + completion);
    out += '}';
  }
  append_extra(out, response_extra_of(samples));
  out += '}';
  return out;
}

// ---------------------------------------------------------------------------------
// Embeddings

namespace {

bool all_numbers(const json& values) {
  return std::all_of(values.begin(), values.end(), [](const json& v) { return v.is_number(); });
}

// The per-input float arrays of a stored embeddings choice. The documented shape is
// {"embeddings": [[...], ...]}; a single {"embedding": [...]} is read as one input.
json embedding_lists(const json& choice) {
  if (const json& lists = field(choice, "embeddings"); lists.is_array()) return lists;
  const json& single = field(choice, "embedding");
  if (!single.is_array()) return json::array();
  return all_numbers(single) ? json::array({single}) : single;
}

// The little-endian bytes of a float32, whatever the host order.
std::array<unsigned char, 4> le_bytes(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  return {static_cast<unsigned char>(bits), static_cast<unsigned char>(bits >> 8),
          static_cast<unsigned char>(bits >> 16), static_cast<unsigned char>(bits >> 24)};
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Strict standard base64 with padding: no whitespace, '=' only as the last one or two
// characters. OpenSSL's EVP_DecodeBlock is lenient about both, so decode here.
std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') ++padding;
  std::string bytes;
  bytes.reserve(text.size() / 4 * 3);
  uint32_t buffer = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size() - padding; ++i) {
    int value = base64_value(text[i]);
    if (value < 0) return std::nullopt;
    buffer = (buffer << 6) | uint32_t(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  // The bits left over by padding must be zero (canonical encoding).
  if ((buffer & ((1u << bits) - 1)) != 0) return std::nullopt;
  return bytes;
}

}  // namespace

std::string floats_to_base64(const json& floats) {
  if (!floats.is_array()) return "";
  std::vector<unsigned char> bytes;
  bytes.reserve(floats.size() * 4);
  for (const json& value : floats) {
    auto le = le_bytes(value.is_number() ? value.get<float>() : 0.0f);
    bytes.insert(bytes.end(), le.begin(), le.end());
  }
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');  // +1: the NUL it writes
  int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                                static_cast<int>(bytes.size()));
  out.resize(written < 0 ? 0 : size_t(written));
  return out;
}

std::optional<json> base64_to_floats(std::string_view base64) {
  auto bytes = base64_decode(base64);
  if (!bytes || bytes->size() % 4 != 0) return std::nullopt;
  json floats = json::array();
  for (size_t i = 0; i < bytes->size(); i += 4) {
    auto b = reinterpret_cast<const unsigned char*>(bytes->data() + i);
    uint32_t bits = uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
    floats.push_back(static_cast<double>(std::bit_cast<float>(bits)));
  }
  return floats;
}

json embeddings_body(const cache::Sample& sample, std::string_view encoding_format,
                     std::string_view fallback_model) {
  const bool base64 = encoding_format == "base64";
  json data = json::array();
  const json lists = embedding_lists(sample.choice);
  for (const json& list : lists) {
    json values = list.is_array() ? list : json::array();
    json embedding = base64 ? json(floats_to_base64(values)) : std::move(values);
    data.push_back({{"object", "embedding"}, {"index", data.size()}, {"embedding", std::move(embedding)}});
  }
  return {{"object", "list"},
          {"data", std::move(data)},
          {"model", sample.model.empty() ? fallback_model : std::string_view(sample.model)},
          {"usage", usage_of(Endpoint::embeddings, {&sample})}};
}

// ---------------------------------------------------------------------------------
// SseParser

namespace {

// Handles one complete line (WHATWG "process the field"): a blank line dispatches
// the event, "data" lines accumulate, comments and other fields are ignored.
void process_line(std::string_view line, std::string& data, bool& has_data,
                  std::vector<std::string>& events) {
  if (line.empty()) {
    if (has_data) events.push_back(std::move(data));
    data.clear();
    has_data = false;
    return;
  }
  if (line.front() == ':') return;
  size_t colon = line.find(':');
  std::string_view name = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (name != "data") return;
  if (has_data) data += '\n';
  data.append(value);
  has_data = true;
}

}  // namespace

void SseParser::feed(std::string_view bytes, std::vector<std::string>& events) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    // The \n of a \r\n split across two feeds belongs to the line already ended.
    if (last_was_cr_) {
      last_was_cr_ = false;
      if (bytes[pos] == '\n') {
        ++pos;
        continue;
      }
    }
    size_t end = bytes.find_first_of("\r\n", pos);
    if (end == std::string_view::npos) {
      line_.append(bytes.substr(pos));
      return;
    }
    line_.append(bytes.substr(pos, end - pos));
    last_was_cr_ = bytes[end] == '\r';
    pos = end + 1;
    process_line(line_, data_, has_data_, events);
    line_.clear();
  }
}

}  // namespace reprise::format
