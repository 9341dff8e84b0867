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
// "choices" without its "index") into the choice object a non-streamed call returns:
//   chat:        {"message":{"role","content"[,"refusal"][,"tool_calls"][,"function_call"]},
//                 "logprobs", "finish_reason"}
//   completions: {"text", "logprobs", "finish_reason"}
// Content pieces are concatenated; tool_calls merged by their "index" (id/type taken
// from the first delta that has them, function.name and function.arguments
// concatenated; the "index" field kept in the merged entries as OpenAI does);
// logprobs.content / logprobs.refusal arrays concatenated (chat), and tokens /
// token_logprobs / top_logprobs / text_offset concatenated (completions); null when
// no chunk carried logprobs.
class ChoiceAccumulator {
 public:
  explicit ChoiceAccumulator(Endpoint endpoint);
  void add(const json& chunk_choice);
  // Chunks that carried content, text, refusal or tool-call pieces: the token count
  // of a streamed choice as OpenAI streams about one token per chunk.
  uint32_t pieces() const { return pieces_; }
  bool finished() const { return !finish_reason_.empty(); }
  const std::string& finish_reason() const { return finish_reason_; }
  json choice() const;

 private:
  Endpoint endpoint_;
  std::string role_ = "assistant";
  std::string content_;
  bool has_content_ = false;
  std::string refusal_;
  bool has_refusal_ = false;
  json tool_calls_ = json::array();  // merged, in order of first appearance
  json function_call_;               // legacy, null when absent
  json logprobs_;                    // null until a chunk carries logprobs
  std::string finish_reason_;
  uint32_t pieces_ = 0;
};

// The chunk choices (without "index") that replay a stored choice as a stream.
//   chat: {"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null},
//         then one chunk per token piece of content (when logprobs.content is present,
//         one chunk per logprobs entry instead, carrying {"content":[entry]} as its
//         logprobs and the entry's "token" as its content), then refusal pieces, then
//         tool_calls (one chunk per call with id/type/name and its full arguments),
//         then {"delta":{},"logprobs":null,"finish_reason":F}.
//   completions: {"text":piece,"index" absent,"logprobs":null,"finish_reason":null}
//         per piece, then {"text":"","logprobs":null,"finish_reason":F}.
// Replaying and accumulating round-trips: ChoiceAccumulator over replay_choice(c)
// gives c back (for the fields listed above).
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
// {"prompt_tokens": P, "total_tokens": P}.
json usage_of(Endpoint endpoint, const std::vector<const cache::Sample*>& samples);

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
//  "choices":[choice with "index": i, i from 0], "usage", "system_fingerprint"}.
// model and system_fingerprint are the first sample's (system_fingerprint null when
// empty); `fallback_model` is used when the samples carry no model.
json completion_body(Endpoint endpoint, std::string_view id, int64_t created,
                     const std::vector<const cache::Sample*>& samples, std::string_view fallback_model);

// One SSE chunk object carrying one chunk choice re-indexed to `index`:
// {"id","object":"chat.completion.chunk"|"text_completion","created","model",
//  "system_fingerprint","choices":[{"index":index, ...chunk_choice}]}, plus
// "usage": null when include_usage (as OpenAI does for every chunk but the last).
struct ChunkHead {
  Endpoint endpoint = Endpoint::chat_completions;
  std::string id;
  int64_t created = 0;
  std::string model;
  std::string system_fingerprint;  // null in the output when empty
  bool include_usage = false;
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
