#pragma once
// The OpenAI wire format of cached samples: pure functions, no I/O.
//   - accumulating a streamed choice into the choice a non-streamed call returns,
//     so a sample made by a stream can answer a JSON request (and the reverse);
//   - replaying a stored choice as stream deltas, one token-sized piece per chunk;
//   - response bodies and chunks assembled from samples (choices re-indexed from 0,
//     usage summed with the prompt counted once, fresh id/created per response);
//   - splitting a call's completion tokens over its choices, exactly;
//   - embeddings as float arrays or base64 of little-endian float32.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/canonical.hpp"
#include "cache/sample.hpp"

namespace reprise::format {

using nlohmann::json;
using cache::Endpoint;

// Accumulates the chunk choices of one streamed choice (each a chunk's element of
// "choices" without its "index") into the choice object a non-streamed call returns,
// keeping every field the stream sent:
//   chat:        {"message":{"role","content", every other delta field}, "logprobs",
//                 "finish_reason", every other field of the chunk choices}
//   completions: {"text", "logprobs", "finish_reason", every other field}
// Delta fields merge as the SDKs' accumulators do: a field seen first (or over a null)
// is taken as sent; strings are concatenated (content, refusal, reasoning_content,
// audio.data, function.arguments, custom.input, ...), objects merged field by field,
// arrays appended (annotations), an entry with an "index" merged into its namesake;
// identifiers (role, id, type) keep their first value,
// other scalars the latest. tool_calls merge by their "index" (in order of first
// appearance), which the merged calls drop as a non-streamed answer has none. Content
// is kept as sent (null stays null); a stream that sent none has content null when it
// called tools or refused, else "". The chunk choices' own other fields (a provider's
// native_finish_reason, say) keep their latest non-null value. logprobs.content /
// logprobs.refusal arrays are concatenated (chat), and tokens / token_logprobs /
// top_logprobs / text_offset (completions); null when no chunk carried logprobs.
class ChoiceAccumulator {
 public:
  explicit ChoiceAccumulator(Endpoint endpoint);
  void add(const json& chunk_choice);
  // Chunks that carried a piece of the answer (content, text, refusal, reasoning, a
  // tool call...): the token count of a streamed choice as OpenAI streams about one
  // token per chunk.
  uint32_t pieces() const { return pieces_; }
  bool finished() const { return !finish_reason_.empty(); }
  const std::string& finish_reason() const { return finish_reason_; }
  json choice() const;

 private:
  Endpoint endpoint_;
  json message_ = json::object();    // chat: the deltas merged, tool_calls aside
  json tool_calls_ = json::array();  // merged, in order of first appearance
  std::vector<json> tool_call_indices_;  // the stream's "index" of each entry of tool_calls_
  std::string text_;                 // completions
  json extra_ = json::object();      // the chunk choices' other fields
  json logprobs_;                    // null until a chunk carries logprobs
  std::string finish_reason_;
  uint32_t pieces_ = 0;
};

// Whether a finish_reason is a normal ending, the only kind stored (DESIGN section 1):
// stop, length, tool_calls, function_call, content_filter. Anything else ("error", as
// OpenRouter reports a generation that failed midway) is not a complete success.
bool normal_finish_reason(std::string_view reason);

// The chunk choices (without "index") that replay a stored choice as a stream.
//   chat: {"delta":{"role":R,"content":"" (null when the message's content is null),
//         and the message's other null fields (refusal: null)},"logprobs":null,
//         "finish_reason":null}; then one chunk per token piece of reasoning_content /
//         reasoning; then of content (when logprobs.content is present, one chunk per
//         logprobs entry instead, carrying {"content":[entry]} as its logprobs and the
//         entry's "token" as its content); then refusal pieces; then one chunk with
//         every other field of the message whole (annotations, audio, ...); then tool_calls (one chunk per call, whole, with its
//         position as "index": function and custom calls alike); then function_call;
//         then {"delta":{},"logprobs":null,"finish_reason":F, the choice's other fields}.
//   completions: {"text":piece,"logprobs":null,"finish_reason":null} per piece, then
//         {"text":"","logprobs":null,"finish_reason":F, the choice's other fields}.
// Replaying and accumulating round-trips: ChoiceAccumulator over replay_choice(c)
// gives c back, and so does any accumulator that concatenates strings (the SDKs').
std::vector<json> replay_choice(Endpoint endpoint, const json& choice);

// Pieces of about one token each: a run of whitespace with the word that follows
// ("Hello", " world", "!" stays with its word). Concatenated they give `text` back.
std::vector<std::string_view> token_pieces(std::string_view text);

// The weight of a non-streamed choice when a call's completion tokens are split
// over its choices: token pieces of its text/content, refusal and tool-call
// arguments; at least 1.
uint64_t choice_weight(Endpoint endpoint, const json& choice);

// Splits `total` into shares proportional to `weights` (a weight of 0 counts as 1)
// that sum exactly to `total`: floors first, then the largest remainders get one
// more (ties to the lower index). Empty weights give an empty result.
std::vector<uint32_t> split_proportionally(uint64_t total, const std::vector<uint64_t>& weights);

// {"prompt_tokens": P, "completion_tokens": C, "total_tokens": P + C} over the
// samples served: P is the prompt once (the largest prompt_tokens among them; they
// come from the same prompt), C the sum of their completion_tokens. Embeddings:
// {"prompt_tokens": P, "total_tokens": P}. Then the samples' usage_extra put together
// again: the integers under completion_tokens_details (every "completion_*" object)
// summed, every other field the first sample's that has it. A response made of one
// call's samples gets that call's usage object back exactly.
json usage_of(Endpoint endpoint, const std::vector<const cache::Sample*>& samples);

// The usage_extra of each of a call's samples (see cache::Sample): `usage` less
// prompt_tokens, completion_tokens and total_tokens. The integers under
// completion_tokens_details (every "completion_*" object) are split in proportion to
// `completion_shares` (split_proportionally, so they sum back exactly); every other
// field belongs to the call and goes to each sample (the prompt is counted once).
// Null entries when there is nothing else.
std::vector<json> split_usage_extra(const json& usage, const std::vector<uint32_t>& completion_shares);

// The fields of an answer (a body, or a chunk) beyond what every answer is rebuilt
// with (id, object, created, model, choices, usage, system_fingerprint, and a chunk's
// per-event obfuscation): service_tier, a provider's own. Null when there are none.
json response_extra_of(const json& answer);

// A stored choice's wire text, made once per sample kept in memory (see
// Sample::rendered): the choice as completion_body puts it (without "index"), and
// replay_choice's chunk choices, each compact JSON without "index".
struct RenderedSample {
  std::string choice;
  std::vector<std::string> pieces;
};
const RenderedSample& rendered(Endpoint endpoint, const cache::Sample& sample);

// completion_body(...) serialised, from the samples' rendered text (no JSON tree of
// the choices is built). Equal to completion_body's JSON; only the key order differs.
std::string completion_text(Endpoint endpoint, std::string_view id, int64_t created,
                            const std::vector<const cache::Sample*>& samples, std::string_view fallback_model);

// Appends `text` as a JSON string literal (quotes, backslashes and control
// characters escaped; the bytes are assumed to be UTF-8 already).
void append_json_string(std::string& out, std::string_view text);

// A fresh response id: "chatcmpl-" / "cmpl-" and 24 random alphanumerics.
std::string new_response_id(Endpoint endpoint);

// The non-streamed body of chat or completions from the samples served, in order:
// {"id","object":"chat.completion"|"text_completion","created","model",
//  "choices":[choice with "index": i, i from 0], "usage", "system_fingerprint",
//  and the response_extra fields}. model and system_fingerprint are the first
// sample's (system_fingerprint null when empty), response_extra the first sample's
// that has one; `fallback_model` is used when the samples carry no model.
json completion_body(Endpoint endpoint, std::string_view id, int64_t created,
                     const std::vector<const cache::Sample*>& samples, std::string_view fallback_model);

// One SSE chunk object carrying one chunk choice re-indexed to `index`:
// {"id","object":"chat.completion.chunk"|"text_completion","created","model",
//  "system_fingerprint","choices":[{"index":index, ...chunk_choice}]}, plus
// "usage": null when include_usage (as OpenAI does for every chunk but the last), and
// the fields of `extra` (a sample's response_extra: service_tier, ...) in every chunk.
struct ChunkHead {
  Endpoint endpoint = Endpoint::chat_completions;
  std::string id;
  int64_t created = 0;
  std::string model;
  std::string system_fingerprint;  // null in the output when empty
  bool include_usage = false;
  json extra;                      // an object, or null
};
json chunk(const ChunkHead& head, uint32_t index, const json& chunk_choice);
// The final usage chunk: "choices": [] and "usage".
json usage_chunk(const ChunkHead& head, const json& usage);
// "data: " + compact JSON + "\n\n".
std::string sse_event(const json& payload);

// The same event as sse_event(chunk(head, index, chunk_choice)), appended to `out`
// several times faster: the head's fields are serialised once per response rather
// than once per token (a replayed hit writes one chunk per token). Only the field
// order differs (the choice's "index" comes first).
class ChunkEncoder {
 public:
  void append(std::string& out, const ChunkHead& head, uint32_t index, const json& chunk_choice);
  // The same with the chunk choice already serialised (compact, without "index").
  void append_text(std::string& out, const ChunkHead& head, uint32_t index, std::string_view chunk_choice);

 private:
  void build(const ChunkHead& head);
  std::string prefix_;  // 'data: {"choices":[{"index":' is last; rebuilt when the head changes
  std::string suffix_;
  std::string model_, fingerprint_;
  json extra_;
  bool built_ = false;
};
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// Embeddings: a sample's choice is {"embeddings": [[floats], ...]} (one array per
// input, in input order). The response body:
// {"object":"list","data":[{"object":"embedding","index":i,"embedding":E}],
//  "model","usage":{"prompt_tokens","total_tokens"}} with E the float array, or the
// base64 of its little-endian float32 bytes when encoding_format is "base64".
json embeddings_body(const cache::Sample& sample, std::string_view encoding_format,
                     std::string_view fallback_model);
std::string floats_to_base64(const json& floats);
// nullopt when not valid base64 of a whole number of float32s.
std::optional<json> base64_to_floats(std::string_view base64);

// An incremental parser of a text/event-stream body (WHATWG rules that matter
// here): bytes in any split, lines ending in \n, \r\n or \r, "data:" lines of one
// event joined with \n, comments (":...") and other fields ignored, an event ends
// at a blank line. Returns the data of each complete event fed so far.
class SseParser {
 public:
  // Appends the data of every event completed by `bytes` to `events`.
  void feed(std::string_view bytes, std::vector<std::string>& events);
  // Bytes buffered of an unfinished event (the caller bounds it).
  size_t buffered() const { return line_.size() + data_.size(); }

 private:
  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool last_was_cr_ = false;
};

}  // namespace reprise::format
