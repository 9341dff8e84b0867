// The OpenAI dialect: Chat Completions, Completions and Embeddings (DESIGN.md sections
// 1-4). Its wire format is proxy/openai_format; this file puts it behind the Dialect
// interface: the upstream call's samples (an answer of n choices is n samples, each
// with its share of the usage), the stream accumulated choice by choice until [DONE],
// and the rendering of samples as chat.completion bodies and chunks.
#include <chrono>
#include <optional>

#include "proxy/dialects/dialects.hpp"
#include "proxy/openai_format.hpp"

namespace reprise::dialects {
namespace {

using cache::Endpoint;
using cache::GenerationError;
using cache::Sample;
using nlohmann::json;
using dialect_util::now_seconds;
using dialect_util::string_field;


uint32_t count_field(const json& usage, const char* name, bool& present) {
  present = false;
  if (!usage.is_object()) return 0;
  auto it = usage.find(name);
  if (it == usage.end() || !it->is_number_unsigned()) return 0;
  present = true;
  return it->get<uint32_t>();
}


// Why choice i's ending makes the answer no complete success (DESIGN section 1: only
// normal endings are stored; "error" is how OpenRouter reports a generation that
// failed midway), or nothing when it ended normally.
std::optional<std::string> abnormal_ending(uint32_t i, const std::string& finish_reason) {
  if (finish_reason.empty())
    return "returned choice " + std::to_string(i) + " without a finish_reason (incomplete)";
  if (!format::normal_finish_reason(finish_reason))
    return "ended choice " + std::to_string(i) + " with finish_reason \"" + finish_reason + "\" (not a complete answer)";
  return std::nullopt;
}

// The fields every sample of one call shares.
Sample sample_base(const json& head, uint32_t prompt_tokens, std::string_view backend) {
  Sample s;
  s.prompt_tokens = prompt_tokens;
  s.system_fingerprint = string_field(head, "system_fingerprint");
  s.model = string_field(head, "model");
  s.created = now_seconds();
  s.backend = std::string(backend);
  return s;
}

// A non-streamed chat or completions body -> one sample per choice. The call's
// completion tokens are split over its choices in proportion to their lengths (the
// API reports only the total for n > 1), so the samples' shares add up exactly.
Expected<std::vector<Sample>, std::string> samples_from_completion(Endpoint endpoint, const json& body, uint32_t size,
                                                                   std::string_view backend) {
  auto choices = body.find("choices");
  if (choices == body.end() || !choices->is_array() || choices->size() != size)
    return std::string("returned " + std::string(choices != body.end() && choices->is_array() ? std::to_string(choices->size()) : "no") +
                       " choices, expected " + std::to_string(size));
  std::vector<json> ordered(size);
  std::vector<bool> seen(size, false);
  for (auto& choice : *choices) {
    auto index = choice.is_object() ? choice.find("index") : choice.end();
    if (!choice.is_object() || index == choice.end() || !index->is_number_unsigned() || index->get<uint64_t>() >= size ||
        seen[index->get<uint64_t>()])
      return std::string("returned a choice with a missing, out-of-range or repeated index");
    size_t i = index->get<size_t>();
    seen[i] = true;
    ordered[i] = choice;
    ordered[i].erase("index");
    if (auto problem = abnormal_ending(i, string_field(ordered[i], "finish_reason"))) return *problem;
  }
  bool has_prompt = false, has_completion = false;
  const json usage = body.value("usage", json());
  uint32_t prompt_tokens = count_field(usage, "prompt_tokens", has_prompt);
  uint32_t completion_tokens = count_field(usage, "completion_tokens", has_completion);
  std::vector<uint64_t> weights;
  for (auto& choice : ordered) weights.push_back(format::choice_weight(endpoint, choice));
  uint64_t total = 0;
  for (auto w : weights) total += w;
  auto shares = format::split_proportionally(has_completion ? completion_tokens : total, weights);
  auto usage_extra = format::split_usage_extra(usage, shares);
  const json response_extra = format::response_extra_of(body);

  std::vector<Sample> samples;
  for (uint32_t i = 0; i < size; ++i) {
    Sample s = sample_base(body, prompt_tokens, backend);
    s.finish_reason = string_field(ordered[i], "finish_reason");
    s.completion_tokens = shares[i];
    s.choice = std::move(ordered[i]);
    s.usage_extra = std::move(usage_extra[i]);
    s.response_extra = response_extra;
    samples.push_back(std::move(s));
  }
  return samples;
}

// An embeddings body -> the one sample of its request: every input's vector, in order.
Expected<std::vector<Sample>, std::string> samples_from_embeddings(const json& body, std::string_view backend) {
  auto data = body.find("data");
  if (data == body.end() || !data->is_array() || data->empty()) return std::string("returned no embeddings");
  json vectors = json::array();
  std::vector<json> ordered(data->size());
  for (auto& item : *data) {
    auto index = item.is_object() ? item.find("index") : item.end();
    if (index == item.end() || !index->is_number_unsigned() || index->get<uint64_t>() >= ordered.size() ||
        !ordered[index->get<size_t>()].is_null())
      return std::string("returned an embedding with a missing, out-of-range or repeated index");
    const json& embedding = item.value("embedding", json());
    if (embedding.is_array()) {
      ordered[index->get<size_t>()] = embedding;
    } else if (embedding.is_string()) {  // a server that answers base64 regardless
      auto floats = format::base64_to_floats(embedding.get<std::string>());
      if (!floats) return std::string("returned an embedding that is not base64 float32");
      ordered[index->get<size_t>()] = std::move(*floats);
    } else {
      return std::string("returned an embedding that is neither an array nor base64");
    }
  }
  for (auto& v : ordered) vectors.push_back(std::move(v));
  bool has_prompt = false;
  Sample s = sample_base(body, count_field(body.value("usage", json()), "prompt_tokens", has_prompt), backend);
  s.choice = {{"embeddings", std::move(vectors)}};
  std::vector<Sample> samples;
  samples.push_back(std::move(s));
  return samples;
}

StreamFault malformed(std::string what) { return StreamFault{std::nullopt, std::move(what)}; }

// A chat or completions stream: every choice's pieces go to the waiting clients as
// they arrive, and are accumulated into the samples stored once the stream reached
// [DONE] with every choice ended normally.
class OpenAiStreamReader : public StreamReader {
 public:
  OpenAiStreamReader(cache::Generation& gen, std::string_view backend)
      : gen_(gen), backend_(backend), choices_(gen.size(), format::ChoiceAccumulator(gen.endpoint())) {}

  std::optional<StreamFault> on_event(std::string_view data) override {
    if (data == "[DONE]") {
      done_ = true;
      return std::nullopt;
    }
    json chunk = json::parse(data, nullptr, false);
    if (!chunk.is_object()) return malformed("sent an SSE event that is not a JSON object");
    if (chunk.contains("error"))  // an error reported inside the stream
      return StreamFault{GenerationError{502, chunk.dump(-1, ' ', false, json::error_handler_t::replace), {}}, {}};
    if (head_.is_null()) {
      head_ = {{"model", chunk.value("model", json())}, {"system_fingerprint", chunk.value("system_fingerprint", json())}};
      // Before the first piece is published: the live relays read them with it.
      gen_.set_identity(string_field(head_, "model"), string_field(head_, "system_fingerprint"),
                        format::response_extra_of(chunk));
    }
    if (json extra = format::response_extra_of(chunk); extra.is_object()) {
      if (!response_extra_.is_object()) response_extra_ = json::object();
      for (auto& [key, value] : extra.items())
        if (!response_extra_.contains(key)) response_extra_[key] = std::move(value);
    }
    if (auto u = chunk.find("usage"); u != chunk.end() && u->is_object()) usage_ = *u;
    auto list = chunk.find("choices");
    if (list == chunk.end() || !list->is_array()) return std::nullopt;
    for (auto& choice : *list) {
      auto index = choice.is_object() ? choice.find("index") : choice.end();
      if (index == choice.end() || !index->is_number_unsigned() || index->get<uint64_t>() >= gen_.size())
        return malformed("sent a chunk with a missing or out-of-range choice index");
      uint32_t i = index->get<uint32_t>();
      json delta = choice;
      delta.erase("index");
      choices_[i].add(delta);
      gen_.publish(i, std::move(delta));
    }
    return std::nullopt;
  }

  Expected<std::vector<Sample>, std::string> finish() override {
    if (!done_) return std::string("ended the stream before [DONE]");
    std::vector<uint64_t> pieces;
    for (uint32_t i = 0; i < gen_.size(); ++i) {
      if (!choices_[i].finished()) return "ended the stream with choice " + std::to_string(i) + " unfinished";
      if (auto problem = abnormal_ending(i, choices_[i].finish_reason())) return *problem;
      pieces.push_back(std::max<uint32_t>(1, choices_[i].pieces()));
    }
    bool has_prompt = false, has_completion = false;
    uint32_t prompt_tokens = count_field(usage_, "prompt_tokens", has_prompt);
    uint32_t completion_tokens = count_field(usage_, "completion_tokens", has_completion);
    uint64_t total_pieces = 0;
    for (auto p : pieces) total_pieces += p;
    auto shares = format::split_proportionally(has_completion ? completion_tokens : total_pieces, pieces);
    auto usage_extra = format::split_usage_extra(usage_, shares);
    std::vector<Sample> samples;
    for (uint32_t i = 0; i < gen_.size(); ++i) {
      Sample s = sample_base(head_, prompt_tokens, backend_);
      s.choice = choices_[i].choice();
      s.finish_reason = choices_[i].finish_reason();
      s.completion_tokens = shares[i];
      s.usage_extra = std::move(usage_extra[i]);
      s.response_extra = response_extra_;
      samples.push_back(std::move(s));
    }
    return samples;
  }

 private:
  cache::Generation& gen_;
  std::string backend_;
  std::vector<format::ChoiceAccumulator> choices_;
  json head_;
  json usage_;
  json response_extra_;  // the chunks' own fields (service_tier, ...), the first value of each
  bool done_ = false;
};

// Chunks re-indexed to the client's slots; the head (id, created, model, fingerprint,
// the answer's own fields) is the first stored sample's, else the first generation's.
class OpenAiStreamRenderer : public StreamRenderer {
 public:
  explicit OpenAiStreamRenderer(const RenderOptions& options) : options_(options) {
    head_.endpoint = options.endpoint;
    head_.id = format::new_response_id(options.endpoint);
    head_.created = now_seconds();
    head_.include_usage = options.include_usage;
  }

  void replay(std::string& out, uint32_t slot, const Sample& sample) override {
    if (!started_) {  // the first slot is stored: its sample names the response
      head_.model = sample.model;
      head_.system_fingerprint = sample.system_fingerprint;
      head_.extra = sample.response_extra;
    }
    started_ = true;
    if (head_.model.empty()) head_.model = sample.model;
    if (head_.extra.is_null()) head_.extra = sample.response_extra;
    for (auto& piece : format::rendered(options_.endpoint, sample).pieces) encoder_.append_text(out, head_, slot, piece);
  }

  void live(std::string& out, uint32_t slot, const cache::Generation& gen, const json& event) override {
    started_ = true;
    if (head_.model.empty()) head_.model = gen.model();
    if (head_.system_fingerprint.empty()) head_.system_fingerprint = gen.system_fingerprint();
    if (head_.extra.is_null()) head_.extra = gen.response_extra();
    encoder_.append(out, head_, slot, event);
  }

  void finish(std::string& out, const std::vector<const Sample*>& samples) override {
    if (head_.model.empty()) head_.model = options_.fallback_model;
    if (options_.include_usage)
      out += format::sse_event(format::usage_chunk(head_, format::usage_of(options_.endpoint, samples)));
    out += format::kSseDone;
  }

 private:
  RenderOptions options_;
  format::ChunkHead head_;
  format::ChunkEncoder encoder_;
  bool started_ = false;
};

class OpenAiDialect : public Dialect {
 public:
  explicit OpenAiDialect(Endpoint endpoint) : endpoint_(endpoint) {}

  Endpoint endpoint() const override { return endpoint_; }
  std::string_view upstream_kind() const override { return "openai"; }
  bool has_n() const override { return true; }

  Expected<cache::CanonicalRequest, cache::CanonicalError> canonicalize(std::string_view raw_body, std::string_view,
                                                                      const std::vector<std::string>&) const override {
    return cache::canonicalize(endpoint_, raw_body);
  }

  std::string upstream_target(const cache::CanonicalRequest&, bool, std::string_view client_query) const override {
    std::string target = endpoint_ == Endpoint::completions  ? "/completions"
                         : endpoint_ == Endpoint::embeddings ? "/embeddings"
                                                             : "/chat/completions";
    if (!client_query.empty()) {
      target += '?';
      target += client_query;
    }
    return target;
  }
  json upstream_body(const cache::CanonicalRequest& request, uint32_t n, bool stream) const override {
    return cache::upstream_body(request, static_cast<int>(n), stream && endpoint_ != Endpoint::embeddings);
  }
  Expected<std::vector<Sample>, std::string> samples_from_json(const json& body, uint32_t n,
                                                               std::string_view backend) const override {
    return endpoint_ == Endpoint::embeddings ? samples_from_embeddings(body, backend)
                                             : samples_from_completion(endpoint_, body, n, backend);
  }
  std::unique_ptr<StreamReader> stream_reader(cache::Generation& gen, std::string_view backend) const override {
    return std::make_unique<OpenAiStreamReader>(gen, backend);
  }

  std::string json_body(const std::vector<const Sample*>& samples, const RenderOptions& options) const override {
    if (endpoint_ == Endpoint::embeddings)
      return format::embeddings_body(*samples.front(), options.encoding_format, options.fallback_model)
          .dump(-1, ' ', false, json::error_handler_t::replace);
    return format::completion_text(endpoint_, format::new_response_id(endpoint_), now_seconds(), samples,
                                   options.fallback_model);
  }
  std::unique_ptr<StreamRenderer> stream_renderer(const RenderOptions& options) const override {
    return std::make_unique<OpenAiStreamRenderer>(options);
  }
  std::string error_body(unsigned, std::string_view body) const override { return std::string(body); }

  Result<json> engine_chat_body(const cache::CanonicalRequest& request) const override { return request.body; }
  Sample from_engine_sample(Sample chat_sample, const cache::CanonicalRequest&) const override { return chat_sample; }

 private:
  Endpoint endpoint_;
};

}  // namespace

std::unique_ptr<Dialect> make_openai(cache::Endpoint endpoint) { return std::make_unique<OpenAiDialect>(endpoint); }

}  // namespace reprise::dialects
