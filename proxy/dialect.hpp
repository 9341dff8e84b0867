#pragma once
// A dialect: one API that clients speak (OpenAI Chat Completions / Completions /
// Embeddings, the OpenAI Responses API, Anthropic Messages, Gemini), as one module
// behind this interface (DESIGN.md section 9). The pipeline, the Cacher, the store, the
// ledger and the admin side handle every dialect's samples alike; only a dialect knows
// its wire format:
//   - the canonical request (what is in the key) and when a request is relayed uncached;
//   - the upstream call: its target and body, and the samples of its answer, whole
//     (JSON) or streamed (SSE, published live to the waiting clients as it arrives);
//   - rendering samples as its JSON body and as its SSE event sequence (stored samples
//     replayed, generations in flight relayed live), ids kept exactly as stored;
//   - its error body;
//   - for the in-process engine: its request as the engine's chat request, and the
//     engine's chat sample as its own.
// Each implementation is one file in proxy/dialects/; dialect_of() picks it by the
// cache endpoint, which is how a generation, a stored record or an export names it.
// Every method is a pure function of its arguments (no I/O) and never throws.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/canonical.hpp"
#include "cache/generation.hpp"
#include "cache/sample.hpp"
#include "proxy/error.hpp"
#include "proxy/net.hpp"

namespace reprise {

// How a response is rendered: what the request asked for beyond its samples.
struct RenderOptions {
  cache::Endpoint endpoint = cache::Endpoint::chat_completions;
  bool stream = false;
  bool include_usage = false;             // OpenAI chat/completions streams
  std::string encoding_format = "float";  // embeddings
  std::string fallback_model;             // the request's model, when samples carry none
};

// Turns one upstream SSE stream into samples, publishing what arrives to the waiting
// clients as it comes (gen.publish: one event per choice, in the form the same
// dialect's StreamRenderer::live takes). Made per generation.
// Why a stream ends early: the generation fails with it and nothing is stored.
struct StreamFault {
  // The upstream reported an error inside the stream: relayed to the clients as it is.
  std::optional<cache::GenerationError> reported;
  // Otherwise, what is wrong with the stream; the clients get a 502 naming the upstream.
  std::string malformed;
};

class StreamReader {
 public:
  virtual ~StreamReader() = default;
  // The data of one SSE event, as the upstream sent it (the dialects that name events
  // repeat the name as the JSON "type", so the data is enough).
  virtual std::optional<StreamFault> on_event(std::string_view data) = 0;
  // After the stream's last byte: the generation's samples (exactly gen.size(), in
  // choice order), or why the stream is no complete success (then nothing is stored).
  virtual Expected<std::vector<cache::Sample>, std::string> finish() = 0;
};

// Writes one streamed response: the client's slots in order, each either a stored
// sample (replayed whole) or a choice of a generation in flight (relayed live, then
// replayed from its samples if the generation published nothing for it). Made per
// response; slot numbers are the client's own (0, 1, ... in its answer).
class StreamRenderer {
 public:
  virtual ~StreamRenderer() = default;
  // A stored sample (or a finished generation's), whole.
  virtual void replay(std::string& out, uint32_t slot, const cache::Sample& sample) = 0;
  // One event that `gen` published for this slot's choice.
  virtual void live(std::string& out, uint32_t slot, const cache::Generation& gen, const nlohmann::json& event) = 0;
  // After the last slot: the closing events (a usage chunk, [DONE]), given every
  // sample served, in slot order.
  virtual void finish(std::string& out, const std::vector<const cache::Sample*>& samples) = 0;
  // A failure after the head was sent: the event that tells the client (the SDKs raise
  // on it); the response is then cut short. `body` is in this dialect's error shape
  // (Dialect::error_body). Default: "data: <body>\n\n", as OpenAI's streams do.
  virtual void error(std::string& out, std::string_view body) {
    out += "data: ";
    out += body;
    out += "\n\n";
  }
};

class Dialect {
 public:
  virtual ~Dialect() = default;

  // ---- identity ----
  virtual cache::Endpoint endpoint() const = 0;
  // The [[upstreams]] kind that speaks it: "openai", "anthropic" or "gemini".
  virtual std::string_view upstream_kind() const = 0;
  // Whether one call can ask for several samples (OpenAI's n, Gemini's candidateCount).
  // Without it, a request is one sample (an X-Reprise-Sample range is one index), and
  // a deficit of d is d calls of one sample each.
  virtual bool has_n() const = 0;

  // ---- the request ----
  // What shapes the answer from outside the body, as the text that canonicalize takes
  // with it (Anthropic's anthropic-version and anthropic-beta headers; Gemini's model and
  // whether the path streams): "" for nothing. `path_model` is the model named by the
  // path (Gemini), `path_stream` whether the path is a streaming one.
  virtual std::string key_context(const http::fields& headers, std::string_view path_model, bool path_stream) const {
    (void)headers, (void)path_model, (void)path_stream;
    return {};
  }
  // The canonical form of a raw body with its key_context (cache/canonical.hpp: keys
  // sorted, numbers normalised, defaults made explicit, minus what does not shape a
  // sample and minus `ignore_paths`). It also accepts its own output's `body` text with
  // an empty context (an export read back). `ignore_paths`: dotted body paths left out
  // of the key ("metadata.user_id", "system.0"; a number indexes an array) but still
  // forwarded upstream (CanonicalRequest::forward).
  virtual Expected<cache::CanonicalRequest, cache::CanonicalError> canonicalize(
      std::string_view raw_body, std::string_view context, const std::vector<std::string>& ignore_paths) const = 0;
  // A request the cache must not answer: its answer depends on state the upstream
  // keeps (Responses `conversation`, `background`, a stored `prompt`). The reason, for
  // the X-Reprise-Cache-Reason header; nullopt when it can be cached.
  virtual std::optional<std::string> uncacheable(const cache::CanonicalRequest& request) const {
    (void)request;
    return std::nullopt;
  }

  // ---- the upstream call ----
  // The target under the upstream's base path ("/chat/completions", "/messages?beta=true",
  // "/models/gemini-2.0-flash:streamGenerateContent?alt=sse"). `client_query` is the
  // query the client's target had (credentials included, as it came), without '?'.
  virtual std::string upstream_target(const cache::CanonicalRequest& request, bool stream,
                                      std::string_view client_query) const = 0;
  // The body of a call for `n` samples (n <= 1 when !has_n()).
  virtual nlohmann::json upstream_body(const cache::CanonicalRequest& request, uint32_t n, bool stream) const = 0;
  // The samples of a whole (non-streamed) 2xx answer: exactly n, complete successes
  // only; or why not (the generation fails, nothing is stored). `backend` goes into
  // each sample's `backend`.
  virtual Expected<std::vector<cache::Sample>, std::string> samples_from_json(const nlohmann::json& body, uint32_t n,
                                                                             std::string_view backend) const = 0;
  virtual std::unique_ptr<StreamReader> stream_reader(cache::Generation& gen, std::string_view backend) const = 0;

  // ---- rendering ----
  // The JSON body of a non-streamed answer made of `samples`, in order.
  virtual std::string json_body(const std::vector<const cache::Sample*>& samples, const RenderOptions& options) const = 0;
  virtual std::unique_ptr<StreamRenderer> stream_renderer(const RenderOptions& options) const = 0;
  // An error body in this dialect's shape, from the body the proxy or the upstream
  // produced: OpenAI-shaped ({"error":{"message","type","param","code"}}: the proxy's
  // own errors, to_openai_json) is converted; a body already in this dialect's shape
  // is kept as it is.
  virtual std::string error_body(unsigned status, std::string_view body) const = 0;
  // Headers this dialect's errors carry besides the body (Anthropic's x-should-retry).
  virtual void error_headers(unsigned status, http::fields& headers) const {
    (void)status, (void)headers;
  }

  // ---- the in-process engine ----
  // The request as an OpenAI chat completions body (messages, max_tokens, temperature,
  // top_p, stop, seed), which the engine takes; an Error (400) for what it cannot say.
  virtual Result<nlohmann::json> engine_chat_body(const cache::CanonicalRequest& request) const = 0;
  // The engine's chat sample ({"message":{"role","content"},"finish_reason"} in
  // `choice`, tokens, model, ...) as this dialect's sample, with fresh ids.
  virtual cache::Sample from_engine_sample(cache::Sample chat_sample, const cache::CanonicalRequest& request) const = 0;
};

// The dialect of a cache endpoint (one instance each, for the life of the process).
const Dialect& dialect_of(cache::Endpoint endpoint);

// Registers every dialect's canonicalize with the cache (cache::canonicalize and the
// export's reader dispatch on the endpoint), with the configured ignore paths per
// upstream kind. Called once at start-up, before any request; tests call it too.
void register_dialects(const std::vector<std::string>& openai_ignore, const std::vector<std::string>& anthropic_ignore,
                       const std::vector<std::string>& gemini_ignore);

// Helpers the dialects share.
namespace dialect_util {
// Removes a dotted path ("metadata.user_id", "system.0") from `body`; a number
// indexes an array (the element is replaced by null so later indices keep their
// meaning). Absent paths are ignored.
void erase_path(nlohmann::json& body, std::string_view path);
// Fresh ids: prefix + 24 random alphanumerics ("resp_", "msg_", "toolu_", "call_").
std::string new_id(std::string_view prefix);
// "event: <name>\ndata: <compact json>\n\n" (name "" writes the data line only).
void append_sse(std::string& out, std::string_view name, const nlohmann::json& data);
// The member `name` of an object, or a null value (absent, or not an object).
const nlohmann::json& field(const nlohmann::json& object, const char* name);
// The member `name` when it is a string, else "".
std::string string_field(const nlohmann::json& object, const char* name);
// Compact JSON text; invalid UTF-8 replaced, never thrown on.
std::string dump(const nlohmann::json& value);
// Unix seconds now.
int64_t now_seconds();
}  // namespace dialect_util

}  // namespace reprise
