// The Google Gemini dialect: POST /v1beta/models/{model}:generateContent and
// :streamGenerateContent?alt=sse (DESIGN.md section 9, design/dialects.md 2.6).
// A sample is one candidate ({"content":{"parts","role"},"finishReason",...} without its
// "index"); candidateCount is Gemini's n, so it stays out of the key and a request for
// three candidates is three samples of the same key. The model and whether the path
// streams come from the path, not the body: key_context carries them to the canonical
// form, which puts the model into the key body ("model", stripped again upstream).
// Streams are bare "data: <GenerateContentResponse>" events (no event names, no
// [DONE]); a candidate ends with the chunk that carries its finishReason, and the
// last chunk of a response carries the usageMetadata.
#include <chrono>
#include <optional>

#include "proxy/dialects/dialects.hpp"
#include "proxy/openai_format.hpp"

namespace reprise::dialects {
namespace {

using cache::CanonicalError;
using cache::CanonicalRequest;
using cache::GenerationError;
using cache::Sample;
using nlohmann::json;
using dialect_util::dump;
using dialect_util::now_seconds;
using dialect_util::string_field;

constexpr uint32_t kMaxCandidates = 8;  // the API's bound on candidateCount




uint64_t count_field(const json& object, const char* name) {
  if (!object.is_object()) return 0;
  auto it = object.find(name);
  return it != object.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

// The only endings stored (DESIGN section 1): SAFETY, RECITATION, a blocked or
// malformed call, or no finishReason at all is no complete answer.
std::optional<std::string> abnormal_ending(uint32_t i, const std::string& finish_reason) {
  if (finish_reason.empty())
    return "returned candidate " + std::to_string(i) + " without a finishReason (incomplete)";
  if (finish_reason != "STOP" && finish_reason != "MAX_TOKENS")
    return "ended candidate " + std::to_string(i) + " with finishReason \"" + finish_reason +
           "\" (not a complete answer)";
  return std::nullopt;
}

// A candidate's "index"; proto3 leaves a 0 out, so an absent one is 0.
std::optional<uint32_t> candidate_index(const json& candidate, uint32_t size) {
  auto it = candidate.find("index");
  if (it == candidate.end()) return 0;
  if (!it->is_number_unsigned() || it->get<uint64_t>() >= size) return std::nullopt;
  return it->get<uint32_t>();
}

// A part that streams as text pieces and that consecutive chunks concatenate: a text
// (or thought text) and nothing else. Parts with more (a thoughtSignature, a
// functionCall, inline data) travel whole.
bool text_part(const json& part) {
  if (!part.is_object() || !part.contains("text") || !part["text"].is_string()) return false;
  for (auto& [key, value] : part.items())
    if (key != "text" && key != "thought") return false;
  return true;
}
bool is_thought(const json& part) { return part.value("thought", json()) == json(true); }

// The token pieces of a candidate's answer: what its share of candidatesTokenCount is
// weighted by when one call's count is split over its candidates.
uint64_t candidate_weight(const json& candidate) {
  uint64_t weight = 0;
  const json content = candidate.value("content", json());
  const json parts = content.is_object() ? content.value("parts", json()) : json();
  if (parts.is_array())
    for (auto& part : parts) {
      if (!part.is_object()) continue;
      if (auto t = part.find("text"); t != part.end() && t->is_string())
        weight += format::token_pieces(t->get_ref<const std::string&>()).size();
      if (auto call = part.find("functionCall"); call != part.end())
        weight += format::token_pieces(dump(*call)).size();
    }
  return std::max<uint64_t>(1, weight);
}

// The answer's own fields (modelVersion, responseId, createTime, promptFeedback, ...):
// everything but the candidates and the usage, which are rebuilt per response.
json response_extra_of(const json& answer) {
  json extra = json::object();
  for (auto& [key, value] : answer.items())
    if (key != "candidates" && key != "usageMetadata") extra[key] = value;
  return extra.empty() ? json() : extra;
}

// One call's candidates (in index order, complete) -> its samples, the call's
// candidatesTokenCount (and thoughtsTokenCount) split over them in proportion to
// their lengths so that the shares add up exactly; the rest of usageMetadata belongs
// to the call and goes with each sample.
std::vector<Sample> make_samples(std::vector<json> candidates, const json& usage, const json& response_extra,
                                 std::string_view backend) {
  std::vector<uint64_t> weights;
  uint64_t total_weight = 0;
  for (auto& c : candidates) {
    weights.push_back(candidate_weight(c));
    total_weight += weights.back();
  }
  const bool has_count = usage.is_object() && usage.contains("candidatesTokenCount");
  auto shares = format::split_proportionally(has_count ? count_field(usage, "candidatesTokenCount") : total_weight, weights);
  std::vector<uint64_t> share_weights(shares.begin(), shares.end());
  const bool has_thoughts = usage.is_object() && usage.contains("thoughtsTokenCount");
  auto thoughts = format::split_proportionally(count_field(usage, "thoughtsTokenCount"), share_weights);
  json extra = json::object();
  if (usage.is_object())
    for (auto& [key, value] : usage.items())
      if (key != "promptTokenCount" && key != "candidatesTokenCount" && key != "totalTokenCount" &&
          key != "thoughtsTokenCount")
        extra[key] = value;
  const std::string model = string_field(response_extra, "modelVersion");
  std::vector<Sample> samples;
  for (size_t i = 0; i < candidates.size(); ++i) {
    Sample s;
    s.finish_reason = string_field(candidates[i], "finishReason");
    s.choice = std::move(candidates[i]);
    s.prompt_tokens = static_cast<uint32_t>(count_field(usage, "promptTokenCount"));
    s.completion_tokens = shares[i];
    s.model = model;
    s.created = now_seconds();
    s.backend = std::string(backend);
    json own = extra;
    if (has_thoughts) own["thoughtsTokenCount"] = thoughts[i];
    s.usage_extra = own.empty() ? json() : std::move(own);
    s.response_extra = response_extra;
    samples.push_back(std::move(s));
  }
  return samples;
}

// usageMetadata of a response made of `samples`: the prompt once, the candidates'
// (and thoughts') tokens summed, the call's other fields as the first sample has
// them. A response of one call's samples gets that call's usageMetadata back.
json usage_of(const std::vector<const Sample*>& samples) {
  json usage = json::object();
  uint64_t prompt = 0, candidates = 0, thoughts = 0;
  bool has_thoughts = false;
  for (const Sample* s : samples) {
    prompt = std::max<uint64_t>(prompt, s->prompt_tokens);
    candidates += s->completion_tokens;
    if (s->usage_extra.is_object() && s->usage_extra.contains("thoughtsTokenCount")) {
      has_thoughts = true;
      thoughts += count_field(s->usage_extra, "thoughtsTokenCount");
    }
  }
  if (!samples.empty() && samples.front()->usage_extra.is_object()) usage = samples.front()->usage_extra;
  usage["promptTokenCount"] = prompt;
  usage["candidatesTokenCount"] = candidates;
  if (has_thoughts) usage["thoughtsTokenCount"] = thoughts;
  usage["totalTokenCount"] = prompt + candidates + thoughts + count_field(usage, "toolUsePromptTokenCount");
  return usage;
}

// The fields every chunk or body of one response repeats: the first sample's answer
// fields (modelVersion, responseId kept exactly), modelVersion made up when absent.
json head_of(const json& response_extra, const std::string& model, const std::string& fallback_model) {
  json head = response_extra.is_object() ? response_extra : json::object();
  if (!head.contains("modelVersion")) head["modelVersion"] = model.empty() ? fallback_model : model;
  return head;
}

// Accumulates the chunk candidates of one streamed candidate into the candidate a
// generateContent call returns, as the Gemini SDKs put a stream together: consecutive
// text parts (thought and answer apart) concatenated into one part, every other part
// (functionCall, a part with a thoughtSignature, inline data) kept whole; the content's
// role its first value; every other field of the candidate (finishReason,
// safetyRatings, citationMetadata, ...) its latest value.
class CandidateAccumulator {
 public:
  void add(const json& candidate) {
    started_ = true;
    for (auto& [key, value] : candidate.items()) {
      if (key == "content" && value.is_object()) {
        add_content(value);
      } else if (!value.is_null()) {
        fields_[key] = value;
      }
    }
  }
  bool started() const { return started_; }
  std::string finish_reason() const { return string_field(fields_, "finishReason"); }
  json candidate() const {
    json out = fields_;
    if (content_.is_object()) {
      json content = content_;
      content["parts"] = parts_;
      out["content"] = std::move(content);
    }
    return out;
  }

 private:
  void add_content(const json& content) {
    if (!content_.is_object()) content_ = json::object();
    for (auto& [key, value] : content.items()) {
      if (key == "parts") continue;
      if (key == "role" && content_.contains("role")) continue;
      if (!value.is_null()) content_[key] = value;
    }
    auto parts = content.find("parts");
    if (parts == content.end() || !parts->is_array()) return;
    for (auto& part : *parts) {
      if (text_part(part) && !parts_.empty() && text_part(parts_.back()) &&
          is_thought(parts_.back()) == is_thought(part)) {
        parts_.back()["text"] = parts_.back()["text"].get<std::string>() + part["text"].get<std::string>();
      } else {
        parts_.push_back(part);
      }
    }
  }

  json fields_ = json::object();
  json content_;  // null until a chunk carries content
  json parts_ = json::array();
  bool started_ = false;
};

StreamFault malformed(std::string what) { return StreamFault{std::nullopt, std::move(what)}; }

// An alt=sse stream: each event a GenerateContentResponse chunk. Every candidate's
// pieces go to the waiting clients as they arrive ({"candidate": the chunk candidate
// less its index}) and are accumulated into the samples stored once every candidate
// ended normally.
class GeminiStreamReader : public StreamReader {
 public:
  GeminiStreamReader(cache::Generation& gen, std::string_view backend)
      : gen_(gen), backend_(backend), candidates_(gen.size()) {}

  std::optional<StreamFault> on_event(std::string_view data) override {
    json chunk = json::parse(data, nullptr, false);
    if (!chunk.is_object()) return malformed("sent an SSE event that is not a JSON object");
    if (auto error = chunk.find("error"); error != chunk.end()) {  // an error reported inside the stream
      unsigned status = 502;
      if (error->is_object())
        if (auto code = error->find("code"); code != error->end() && code->is_number_unsigned() &&
                                              code->get<uint64_t>() >= 400 && code->get<uint64_t>() <= 599)
          status = code->get<unsigned>();
      return StreamFault{GenerationError{status, dump(chunk), {}}, {}};
    }
    if (json extra = response_extra_of(chunk); extra.is_object()) {
      if (!response_extra_.is_object()) response_extra_ = json::object();
      for (auto& [key, value] : extra.items())
        if (!response_extra_.contains(key)) response_extra_[key] = std::move(value);
    }
    if (!identified_) {  // before the first publish: the live relays read it with it
      identified_ = true;
      gen_.set_identity(string_field(response_extra_, "modelVersion"), "", response_extra_);
    }
    if (auto usage = chunk.find("usageMetadata"); usage != chunk.end() && usage->is_object()) usage_ = *usage;
    auto list = chunk.find("candidates");
    if (list == chunk.end()) return std::nullopt;
    if (!list->is_array()) return malformed("sent a chunk whose candidates is not an array");
    for (auto& candidate : *list) {
      auto index = candidate.is_object() ? candidate_index(candidate, gen_.size()) : std::nullopt;
      if (!index) return malformed("sent a chunk with an out-of-range candidate index");
      json piece = candidate;
      piece.erase("index");
      candidates_[*index].add(piece);
      gen_.publish(*index, json{{"candidate", std::move(piece)}});
    }
    return std::nullopt;
  }

  Expected<std::vector<Sample>, std::string> finish() override {
    std::vector<json> candidates;
    for (uint32_t i = 0; i < gen_.size(); ++i) {
      if (!candidates_[i].started()) return "ended the stream without candidate " + std::to_string(i);
      if (auto problem = abnormal_ending(i, candidates_[i].finish_reason())) return *problem;
      candidates.push_back(candidates_[i].candidate());
    }
    return make_samples(std::move(candidates), usage_, response_extra_, backend_);
  }

 private:
  cache::Generation& gen_;
  std::string backend_;
  std::vector<CandidateAccumulator> candidates_;
  json usage_;
  json response_extra_;  // the chunks' own fields, the first value of each
  bool identified_ = false;
};

// The chunk candidates (without "index") that replay a stored candidate: one per
// token piece of each text part (thought text too), other parts (a functionCall, a
// part with a thoughtSignature) whole, the content's role on each; the last one also
// carries the content's and the candidate's other fields (finishReason,
// safetyRatings, ...). Accumulated as CandidateAccumulator does (and as a client
// joining chunk texts does), they give the stored candidate back.
std::vector<json> replay_candidates(const json& stored) {
  json fields = stored.is_object() ? stored : json::object();
  fields.erase("content");
  const json content = stored.is_object() ? stored.value("content", json()) : json();
  if (!content.is_object()) return {fields};  // nothing said (a MAX_TOKENS at once): the fields alone
  json content_fields = content;
  content_fields.erase("parts");
  if (!content_fields.contains("role")) content_fields["role"] = "model";
  std::vector<json> parts;  // one per chunk
  const json all = content.value("parts", json::array());
  if (all.is_array())
    for (auto& part : all) {
      if (text_part(part) && !part["text"].get_ref<const std::string&>().empty()) {
        for (std::string_view piece : format::token_pieces(part["text"].get_ref<const std::string&>())) {
          json one = part;
          one["text"] = std::string(piece);
          parts.push_back(std::move(one));
        }
      } else {
        parts.push_back(part);
      }
    }
  std::vector<json> out;
  for (size_t k = 0; k < parts.size(); ++k) {
    const bool last = k + 1 == parts.size();
    json candidate = last ? fields : json::object();
    json c = last ? content_fields : json{{"role", content_fields["role"]}};
    c["parts"] = json::array({std::move(parts[k])});
    candidate["content"] = std::move(c);
    out.push_back(std::move(candidate));
  }
  if (parts.empty()) {
    content_fields["parts"] = json::array();
    fields["content"] = std::move(content_fields);
    out.push_back(std::move(fields));
  }
  return out;
}

// Compact JSON of an object less its closing brace, which close_with_index writes.
std::string open_object(const json& object) {
  std::string text = dump(object.is_object() ? object : json::object());
  text.pop_back();
  return text;
}
void close_with_index(std::string& out, std::string_view open, uint32_t index) {
  out += open;
  if (open.size() > 1) out += ',';
  out += "\"index\":";
  out += std::to_string(index);
  out += '}';
}
// The fields of an object as they go inside another one: its compact JSON less the braces.
std::string inner_fields(const json& object) {
  std::string text = dump(object);
  return text.size() > 2 ? text.substr(1, text.size() - 2) : std::string();
}

// A stored candidate's wire text, made once per sample in memory (Sample::rendered: a
// hit served again and again is serialised once). Only this dialect renders the
// samples of its endpoint, so the slot holds this type. Both are open_object texts:
// the candidate of the JSON answer, and its replay_candidates.
struct RenderedCandidate {
  std::string choice;
  std::vector<std::string> pieces;
};

const RenderedCandidate& rendered(const Sample& sample) {
  return cache::rendered_once<RenderedCandidate>(sample, [&](RenderedCandidate& made) {
    made.choice = open_object(sample.choice);
    for (auto& piece : replay_candidates(sample.choice)) made.pieces.push_back(open_object(piece));
  });
}

// Chunks re-indexed to the client's slots, each with the response's head (the first
// sample's modelVersion, responseId, ...). A candidate's last chunk (its finishReason)
// is held back until something follows it, so that the response's very last chunk can
// carry the usageMetadata, where Gemini puts it (and where @google/genai users read it,
// with the finishReason, from the last chunk).
class GeminiStreamRenderer : public StreamRenderer {
 public:
  explicit GeminiStreamRenderer(const RenderOptions& options) : options_(options) {}

  void replay(std::string& out, uint32_t slot, const Sample& sample) override {
    if (!headed_) set_head(head_of(sample.response_extra, sample.model, options_.fallback_model));
    flush(out);
    const auto& pieces = rendered(sample).pieces;
    for (size_t k = 0; k < pieces.size(); ++k) {
      if (k + 1 == pieces.size()) {
        open_chunk(pending_, pieces[k], slot);
      } else {
        open_chunk(out, pieces[k], slot);
        out += "}\n\n";
      }
    }
  }

  void live(std::string& out, uint32_t slot, const cache::Generation& gen, const json& event) override {
    if (!headed_) set_head(head_of(gen.response_extra(), gen.model(), options_.fallback_model));
    flush(out);
    const json candidate = event.value("candidate", json::object());
    const std::string piece = open_object(candidate);
    if (candidate.is_object() && candidate.contains("finishReason")) {
      open_chunk(pending_, piece, slot);
    } else {
      open_chunk(out, piece, slot);
      out += "}\n\n";
    }
  }

  void finish(std::string& out, const std::vector<const Sample*>& samples) override {
    if (!headed_) set_head(head_of(json(), "", options_.fallback_model));
    if (pending_.empty()) {  // no candidate chunk to carry it: the usage alone
      pending_ = "data: {" + head_;
      if (!head_.empty()) pending_ += ',';
    } else {
      pending_ += ',';
    }
    out += pending_;
    out += "\"usageMetadata\":";
    out += dump(usage_of(samples));
    out += "}\n\n";
    pending_.clear();
  }

 private:
  void set_head(const json& head) {
    head_ = inner_fields(head);
    headed_ = true;
  }
  // 'data: {"candidates":[<piece, index>],<head>' : left open for "}\n\n" or the usage.
  void open_chunk(std::string& out, std::string_view piece, uint32_t slot) const {
    out += "data: {\"candidates\":[";
    close_with_index(out, piece, slot);
    out += ']';
    if (!head_.empty()) {
      out += ',';
      out += head_;
    }
  }
  void flush(std::string& out) {
    if (pending_.empty()) return;
    out += pending_;
    out += "}\n\n";
    pending_.clear();
  }

  RenderOptions options_;
  std::string head_;  // inner_fields of the response's head
  bool headed_ = false;
  std::string pending_;  // an open chunk held back
};

// The canonical reason phrase Google's APIs give each HTTP status (google.rpc.Code).
std::string_view status_name(unsigned status) {
  switch (status) {
    case 400: return "INVALID_ARGUMENT";
    case 401: return "UNAUTHENTICATED";
    case 403: return "PERMISSION_DENIED";
    case 404: return "NOT_FOUND";
    case 409: return "ABORTED";
    case 429: return "RESOURCE_EXHAUSTED";
    case 499: return "CANCELLED";
    case 501: return "UNIMPLEMENTED";
    case 503: return "UNAVAILABLE";
    case 504: return "DEADLINE_EXCEEDED";
    default: return "INTERNAL";
  }
}

// key_context's form: {"model":M,"stream":B} on one line.
struct PathContext {
  std::optional<std::string> model;
  bool stream = false;
};
std::optional<PathContext> read_context(std::string_view context) {
  PathContext out;
  if (context.empty()) return out;
  json parsed = json::parse(context, nullptr, false);
  if (!parsed.is_object()) return std::nullopt;
  if (auto m = parsed.find("model"); m != parsed.end() && m->is_string()) out.model = m->get<std::string>();
  out.stream = parsed.value("stream", json(false)) == json(true);
  return out;
}

// A model name as a path segment: unreserved characters kept, the rest percent-encoded.
std::string path_segment(std::string_view model) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : model) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += char(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The text of a content's parts for the engine, or why it cannot say them.
Result<std::string> plain_text(const json& content, const std::string& where) {
  std::string text;
  const json parts = content.is_object() ? content.value("parts", json()) : json();
  if (!parts.is_array()) return Error{ErrorKind::bad_request, where + " has no parts array", where};
  for (auto& part : parts) {
    if (!text_part(part))
      return Error{ErrorKind::bad_request,
                   "the in-process engine answers text only; " + where +
                       " has a part that is not text (a function call or response, or inline or file data)",
                   where};
    if (is_thought(part)) continue;
    text += part["text"].get<std::string>();
  }
  return text;
}

class GeminiDialect : public Dialect {
 public:
  cache::Endpoint endpoint() const override { return cache::Endpoint::gemini; }
  std::string_view upstream_kind() const override { return "gemini"; }
  bool has_n() const override { return true; }

  std::string key_context(const http::fields&, std::string_view path_model, bool path_stream) const override {
    return dump(json{{"model", path_model}, {"stream", path_stream}});
  }

  Expected<CanonicalRequest, CanonicalError> canonicalize(std::string_view raw_body, std::string_view context,
                                                          const std::vector<std::string>& ignore_paths) const override {
    auto parsed = cache::parse_canonical_json(raw_body);
    if (!parsed) return parsed.error();
    json body = std::move(parsed.value());
    if (!body.is_object()) return CanonicalError{"the request body must be a JSON object", {}};
    auto path = read_context(context);
    if (!path) return CanonicalError{"malformed Gemini key context", {}};
    // A null is the field left out.
    for (auto it = body.begin(); it != body.end();) it = it->is_null() ? body.erase(it) : std::next(it);

    CanonicalRequest out;
    // The path names the model; a body read back from an export has it inside.
    if (path->model) body["model"] = *path->model;
    auto model = body.find("model");
    if (model == body.end() || !model->is_string() || model->get_ref<const std::string&>().empty())
      return CanonicalError{"the model must be named in the path (/v1beta/models/{model}:generateContent)", "model"};
    out.model = model->get<std::string>();
    out.stream = path->stream;

    auto contents = body.find("contents");
    if (contents == body.end()) return CanonicalError{"* GenerateContentRequest.contents: contents is not specified", "contents"};
    if (!contents->is_array() || contents->empty())
      return CanonicalError{"* GenerateContentRequest.contents: contents must be a non-empty array of Content", "contents"};
    for (auto& content : *contents)
      if (!content.is_object())
        return CanonicalError{"* GenerateContentRequest.contents: each content must be an object with parts", "contents"};
    for (const char* name : {"systemInstruction", "toolConfig"})
      if (auto it = body.find(name); it != body.end() && !it->is_object())
        return CanonicalError{std::string(name) + " must be an object", name};
    for (const char* name : {"tools", "safetySettings"})
      if (auto it = body.find(name); it != body.end() && !it->is_array())
        return CanonicalError{std::string(name) + " must be an array", name};

    if (auto config = body.find("generationConfig"); config != body.end()) {
      if (!config->is_object()) return CanonicalError{"generationConfig must be an object", "generationConfig"};
      for (auto it = config->begin(); it != config->end();) it = it->is_null() ? config->erase(it) : std::next(it);
      if (auto count = config->find("candidateCount"); count != config->end()) {
        if (!count->is_number_integer() || count->get<int64_t>() < 1 || count->get<int64_t>() > kMaxCandidates)
          return CanonicalError{"generationConfig.candidateCount must be an integer from 1 to 8",
                                "generationConfig.candidateCount"};
        out.n = static_cast<int>(count->get<int64_t>());
        config->erase(count);  // Gemini's n: how many samples, not what they are
      }
      if (auto t = config->find("temperature"); t != config->end()) {
        if (!t->is_number()) return CanonicalError{"generationConfig.temperature must be a number", "generationConfig.temperature"};
        out.temperature = t->get<double>();
      }
      if (config->empty()) body.erase(config);
    }

    // Forwarded, but no part of what a sample is: billing labels.
    json forward = body;
    body.erase("labels");
    for (auto& path_text : ignore_paths) dialect_util::erase_path(body, path_text);
    if (forward != body) out.forward = std::move(forward);
    out.body = std::move(body);
    cache::seal(out);
    return out;
  }

  std::optional<std::string> uncacheable(const CanonicalRequest& request) const override {
    if (request.body.contains("cachedContent"))
      return std::string("cachedContent names context the upstream keeps (a server-side cache)");
    return std::nullopt;
  }

  std::string upstream_target(const CanonicalRequest& request, bool stream, std::string_view client_query) const override {
    std::string target = "/models/" + path_segment(request.model) + (stream ? ":streamGenerateContent" : ":generateContent");
    // The client's query (its ?key= credential among it) goes on; alt only frames the
    // answer, and the proxy picks the framing it reads.
    std::string query;
    while (!client_query.empty()) {
      size_t amp = client_query.find('&');
      std::string_view param = client_query.substr(0, amp);
      client_query = amp == std::string_view::npos ? std::string_view{} : client_query.substr(amp + 1);
      std::string_view name = param.substr(0, param.find('='));
      if (param.empty() || name == "alt") continue;
      if (!query.empty()) query += '&';
      query += param;
    }
    if (stream) query += query.empty() ? "alt=sse" : "&alt=sse";
    if (!query.empty()) target += "?" + query;
    return target;
  }

  json upstream_body(const CanonicalRequest& request, uint32_t n, bool) const override {
    json body = request.forward.is_null() ? request.body : request.forward;
    body.erase("model");  // named by the path
    if (n > 1) body["generationConfig"]["candidateCount"] = n;
    return body;
  }

  Expected<std::vector<Sample>, std::string> samples_from_json(const json& body, uint32_t n,
                                                               std::string_view backend) const override {
    auto list = body.find("candidates");
    if (list == body.end() || !list->is_array() || list->size() != n)
      return std::string("returned " +
                         std::string(list != body.end() && list->is_array() ? std::to_string(list->size()) : "no") +
                         " candidates, expected " + std::to_string(n));
    std::vector<json> ordered(n);
    std::vector<bool> seen(n, false);
    for (auto& candidate : *list) {
      auto index = candidate.is_object() ? candidate_index(candidate, n) : std::nullopt;
      if (!index || seen[*index]) return std::string("returned a candidate with an out-of-range or repeated index");
      seen[*index] = true;
      ordered[*index] = candidate;
      ordered[*index].erase("index");
      if (auto problem = abnormal_ending(*index, string_field(ordered[*index], "finishReason"))) return *problem;
    }
    return make_samples(std::move(ordered), body.value("usageMetadata", json()), response_extra_of(body), backend);
  }

  std::unique_ptr<StreamReader> stream_reader(cache::Generation& gen, std::string_view backend) const override {
    return std::make_unique<GeminiStreamReader>(gen, backend);
  }

  std::string json_body(const std::vector<const Sample*>& samples, const RenderOptions& options) const override {
    const Sample* first = samples.empty() ? nullptr : samples.front();
    std::string body = "{\"candidates\":[";
    for (size_t i = 0; i < samples.size(); ++i) {
      if (i) body += ',';
      close_with_index(body, rendered(*samples[i]).choice, static_cast<uint32_t>(i));
    }
    body += "],\"usageMetadata\":";
    body += dump(usage_of(samples));
    const std::string head =
        inner_fields(head_of(first ? first->response_extra : json(), first ? first->model : "", options.fallback_model));
    if (!head.empty()) body += "," + head;
    body += '}';
    return body;
  }

  std::unique_ptr<StreamRenderer> stream_renderer(const RenderOptions& options) const override {
    return std::make_unique<GeminiStreamRenderer>(options);
  }

  std::string error_body(unsigned status, std::string_view body) const override {
    json parsed = json::parse(body, nullptr, false);
    const json error = parsed.is_object() ? parsed.value("error", json()) : json();
    if (error.is_object() && error.contains("status") && error["status"].is_string()) return std::string(body);
    std::string message = string_field(error, "message");
    if (message.empty()) message = error.is_string() ? error.get<std::string>() : std::string(body);
    return dump(json{{"error", {{"code", status}, {"message", message}, {"status", status_name(status)}}}});
  }

  Result<json> engine_chat_body(const CanonicalRequest& request) const override {
    const json& body = request.body;
    for (const char* name : {"tools", "cachedContent"})
      if (body.contains(name))
        return Error{ErrorKind::bad_request, std::string("the in-process engine does not support ") + name, name};
    json messages = json::array();
    if (auto system = body.find("systemInstruction"); system != body.end()) {
      auto text = plain_text(*system, "systemInstruction");
      if (!text) return text.error();
      messages.push_back({{"role", "system"}, {"content", text.value()}});
    }
    const json contents = body.value("contents", json::array());
    for (size_t i = 0; i < contents.size(); ++i) {
      const std::string where = "contents." + std::to_string(i);
      const std::string role = string_field(contents[i], "role");
      if (!role.empty() && role != "user" && role != "model")
        return Error{ErrorKind::bad_request, where + ".role must be \"user\" or \"model\"", where + ".role"};
      auto text = plain_text(contents[i], where);
      if (!text) return text.error();
      messages.push_back({{"role", role == "model" ? "assistant" : "user"}, {"content", text.value()}});
    }
    json chat = {{"messages", std::move(messages)}};
    const json config = body.value("generationConfig", json::object());
    for (auto& [key, value] : config.items()) {
      if (key == "temperature") chat["temperature"] = value;
      else if (key == "topP") chat["top_p"] = value;
      else if (key == "topK") chat["top_k"] = value;
      else if (key == "maxOutputTokens") chat["max_tokens"] = value;
      else if (key == "stopSequences") chat["stop"] = value;
      else if (key == "seed") chat["seed"] = value;
      else
        return Error{ErrorKind::bad_request, "the in-process engine does not support generationConfig." + key,
                     "generationConfig." + key};
    }
    return chat;
  }

  Sample from_engine_sample(Sample chat_sample, const CanonicalRequest& request) const override {
    Sample s = std::move(chat_sample);
    const json message = s.choice.value("message", json::object());
    const std::string text = string_field(message, "content");
    const std::string finish = s.finish_reason == "length" ? "MAX_TOKENS" : "STOP";
    s.choice = {{"content", {{"parts", json::array({{{"text", text}}})}, {"role", "model"}}}, {"finishReason", finish}};
    s.finish_reason = finish;
    if (s.model.empty()) s.model = request.model;
    s.response_extra = {{"modelVersion", s.model}, {"responseId", dialect_util::new_id("")}};
    s.usage_extra = nullptr;
    return s;
  }
};

}  // namespace

std::unique_ptr<Dialect> make_gemini() { return std::make_unique<GeminiDialect>(); }

}  // namespace reprise::dialects
