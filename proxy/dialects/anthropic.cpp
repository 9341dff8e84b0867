// The Anthropic Messages dialect: POST /v1/messages (also ?beta=true), DESIGN.md section 9
// and design/dialects.md section 2. One call is one sample (no n); a sample's choice is
// the whole message as the API answered it (msg_ and toolu_ ids kept), replayed as JSON
// or as the API's own event sequence, with the `event:` lines the SDK dispatches on.
#include <algorithm>
#include <chrono>
#include <optional>

#include "proxy/dialects/dialects.hpp"
#include "proxy/openai_format.hpp"

namespace reprise::dialects {
namespace {

using cache::CanonicalError;
using cache::GenerationError;
using cache::Sample;
using nlohmann::json;
using dialect_util::dump;
using dialect_util::now_seconds;
using dialect_util::string_field;

constexpr const char* kVersionField = "anthropic-version";
constexpr const char* kBetaField = "anthropic-beta";
// Claude Code's per-request system block (design/dialects.md 2.5): its cch changes on
// every request, so it never shapes the key.
constexpr std::string_view kBillingPrefix = "x-anthropic-billing-header:";



const std::string* string_at(const json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}


uint32_t count_at(const json& usage, const char* name) {
  if (!usage.is_object()) return 0;
  auto it = usage.find(name);
  if (it == usage.end() || !it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > UINT32_MAX) return 0;
  return static_cast<uint32_t>(it->get<int64_t>());
}

// The endings that make a message a complete answer. pause_turn (a server tool loop
// the client must continue) and model_context_window_exceeded are not.
bool complete_stop_reason(std::string_view reason) {
  return reason == "end_turn" || reason == "max_tokens" || reason == "stop_sequence" || reason == "tool_use" ||
         reason == "refusal";
}

// A whole message -> its sample, or why it is no complete success.
Expected<Sample, std::string> message_sample(const json& message, std::string_view backend) {
  if (!message.is_object() || string_field(message, "type") != "message")
    return std::string("returned no message object");
  auto reason = message.find("stop_reason");
  if (reason == message.end() || reason->is_null())
    return std::string("returned a message without a stop_reason (incomplete)");
  if (!reason->is_string() || !complete_stop_reason(reason->get_ref<const std::string&>()))
    return "ended the message with stop_reason " + dump(*reason) + " (not a complete answer)";
  const json usage = message.value("usage", json());
  Sample s;
  s.choice = message;
  s.finish_reason = reason->get<std::string>();
  s.prompt_tokens = count_at(usage, "input_tokens") + count_at(usage, "cache_read_input_tokens") +
                    count_at(usage, "cache_creation_input_tokens");
  s.completion_tokens = count_at(usage, "output_tokens");
  s.model = string_field(message, "model");
  s.created = now_seconds();
  s.backend = std::string(backend);
  return s;
}

// An error type of the API and its HTTP status (design/dialects.md 2.4), both ways.
struct ErrorType {
  unsigned status;
  const char* type;
};
constexpr ErrorType kErrorTypes[] = {
    {400, "invalid_request_error"}, {401, "authentication_error"}, {402, "billing_error"},
    {403, "permission_error"},      {404, "not_found_error"},      {413, "request_too_large"},
    {429, "rate_limit_error"},      {500, "api_error"},            {504, "timeout_error"},
    {529, "overloaded_error"}};

unsigned status_of_error_type(std::string_view type) {
  for (const auto& e : kErrorTypes)
    if (type == e.type) return e.status;
  return 500;
}

const char* error_type_of_status(unsigned status) {
  for (const auto& e : kErrorTypes)
    if (status == e.status) return e.type;
  return status >= 500 ? "api_error" : "invalid_request_error";
}

// ---- the canonical request ----

CanonicalError invalid(std::string message, std::string param = {}) {
  return CanonicalError{std::move(message), std::move(param)};
}

// Prompt caching marks blocks with cache_control: it changes usage and billing, never
// the answer. Tool results nest blocks of their own.
void strip_cache_control(json& blocks) {
  if (!blocks.is_array()) return;
  for (auto& block : blocks) {
    if (!block.is_object()) continue;
    block.erase("cache_control");
    if (auto content = block.find("content"); content != block.end()) strip_cache_control(*content);
  }
}

bool billing_block(const json& block) {
  const std::string* text = block.is_object() && string_field(block, "type") == "text" ? string_at(block, "text") : nullptr;
  return text && text->starts_with(kBillingPrefix);
}

// Takes out of the key what does not shape a sample (design/dialects.md 2.1, 2.5).
void drop_unshaping(json& key) {
  for (const char* name : {"metadata", "service_tier", "inference_geo", "cache_control"}) key.erase(name);
  for (auto it = key.begin(); it != key.end();) it = it->is_null() ? key.erase(it) : std::next(it);
  if (auto system = key.find("system"); system != key.end() && system->is_array()) {
    // Replaced by null, not removed, so the indices of configured ignore paths
    // ("system.1") keep their meaning when the key is read back.
    for (auto& block : *system)
      if (billing_block(block)) block = nullptr;
    strip_cache_control(*system);
  }
  if (auto messages = key.find("messages"); messages != key.end())
    for (auto& message : *messages)
      if (message.is_object())
        if (auto content = message.find("content"); content != message.end()) strip_cache_control(*content);
  if (auto tools = key.find("tools"); tools != key.end()) strip_cache_control(*tools);
}

// key_context's form: a one-line JSON object of the header values ("" for none).
std::string header_values(const http::fields& headers, const char* name) {
  std::string joined;
  for (const auto& field : headers) {
    if (!beast::iequals(field.name_string(), name)) continue;
    if (!joined.empty()) joined += ',';
    joined += std::string(field.value());
  }
  return joined;
}

// anthropic-beta is a set of feature names: "a, b" and "b,a" ask for the same thing.
std::string normalised_betas(std::string_view list) {
  std::vector<std::string> names;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view name = list.substr(0, comma);
    while (!name.empty() && (name.front() == ' ' || name.front() == '\t')) name.remove_prefix(1);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (!name.empty()) names.emplace_back(name);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string out;
  for (auto& name : names) out += (out.empty() ? "" : ",") + name;
  return out;
}

// ---- the stream ----

StreamFault malformed(std::string what) { return StreamFault{std::nullopt, std::move(what)}; }

// Rebuilds the message from its events as the official SDKs do (MessageStream's
// accumulation), publishing every event but ping to the waiting clients verbatim.
class AnthropicStreamReader : public StreamReader {
 public:
  AnthropicStreamReader(cache::Generation& gen, std::string_view backend) : gen_(gen), backend_(backend) {}

  std::optional<StreamFault> on_event(std::string_view data) override {
    if (data == "[DONE]") return std::nullopt;  // not Anthropic's, harmless
    json event = json::parse(data, nullptr, false);
    const std::string* type = string_at(event, "type");
    if (!type) return malformed("sent an SSE event that is not a JSON object with a type");
    if (*type == "ping") return std::nullopt;
    if (*type == "error") {
      const unsigned status = status_of_error_type(string_field(event.value("error", json()), "type"));
      return StreamFault{GenerationError{status, dump(event), {}}, {}};
    }
    if (auto problem = accumulate(*type, event)) return malformed(*problem);
    gen_.publish(0, std::move(event));
    return std::nullopt;
  }

  Expected<std::vector<Sample>, std::string> finish() override {
    if (!stopped_) return std::string("ended the stream before message_stop");
    auto sample = message_sample(message_, backend_);
    if (!sample) return sample.error();
    std::vector<Sample> samples;
    samples.push_back(std::move(sample.value()));
    return samples;
  }

 private:
  std::optional<std::string> accumulate(const std::string& type, const json& event) {
    if (type == "message_start") {
      if (started_) return "sent a second message_start";
      auto message = event.find("message");
      if (message == event.end() || !message->is_object()) return "sent a message_start without a message";
      message_ = *message;
      if (!message_["content"].is_array()) message_["content"] = json::array();
      started_ = true;
      // Before the first publish: the live relays read it with it.
      gen_.set_identity(string_field(message_, "model"), "");
      return std::nullopt;
    }
    if (!started_) return "sent " + type + " before message_start";
    json& content = message_["content"];
    if (type == "content_block_start") {
      auto block = event.find("content_block");
      if (block == event.end() || !block->is_object()) return "sent a content_block_start without a block";
      content.push_back(*block);
      json_buffers_.emplace_back();
      return std::nullopt;
    }
    if (type == "content_block_delta" || type == "content_block_stop") {
      auto index = event.find("index");
      if (index == event.end() || !index->is_number_integer() || index->get<int64_t>() < 0 ||
          index->get<uint64_t>() >= content.size())
        return "sent " + type + " for a block it never started";
      const size_t i = index->get<size_t>();
      json& block = content[i];
      if (type == "content_block_stop") return parse_input(block, json_buffers_[i]);
      return apply_delta(block, json_buffers_[i], event.value("delta", json()));
    }
    if (type == "message_delta") {
      if (auto delta = event.find("delta"); delta != event.end() && delta->is_object())
        for (auto& [key, value] : delta->items()) message_[key] = value;
      if (auto usage = event.find("usage"); usage != event.end() && usage->is_object()) {
        if (!message_["usage"].is_object()) message_["usage"] = json::object();
        for (auto& [key, value] : usage->items())
          if (!value.is_null()) message_["usage"][key] = value;  // never clobbered by a null
      }
      if (auto management = event.find("context_management"); management != event.end())
        message_["context_management"] = *management;
      return std::nullopt;
    }
    if (type == "message_stop") stopped_ = true;
    return std::nullopt;  // other types: relayed, nothing to keep
  }

  static std::optional<std::string> apply_delta(json& block, std::string& json_buffer, const json& delta) {
    const std::string delta_type = string_field(delta, "type");
    const std::string block_type = string_field(block, "type");
    auto append = [&](const char* field, const char* piece) -> std::optional<std::string> {
      const std::string* text = string_at(delta, piece);
      if (!text) return "sent a " + delta_type + " without its " + piece;
      json& into = block[field];
      if (into.is_null()) into = "";
      if (!into.is_string()) return "sent a " + delta_type + " for a block whose " + field + " is not a string";
      into.get_ref<std::string&>() += *text;
      return std::nullopt;
    };
    if (delta_type == "text_delta" && block_type == "text") return append("text", "text");
    if (delta_type == "thinking_delta" && block_type == "thinking") return append("thinking", "thinking");
    if (delta_type == "signature_delta" && block_type == "thinking") {
      const std::string* signature = string_at(delta, "signature");
      if (!signature) return "sent a signature_delta without its signature";
      block["signature"] = *signature;
    } else if (delta_type == "citations_delta" && block_type == "text") {
      if (!block["citations"].is_array()) block["citations"] = json::array();
      block["citations"].push_back(delta.value("citation", json()));
    } else if (delta_type == "input_json_delta" && block.contains("input")) {
      const std::string* partial = string_at(delta, "partial_json");
      if (!partial) return "sent an input_json_delta without its partial_json";
      json_buffer += *partial;
    }
    return std::nullopt;
  }

  // A tool block's input arrives as pieces of one JSON text, whole at its stop.
  static std::optional<std::string> parse_input(json& block, const std::string& json_buffer) {
    if (json_buffer.empty()) return std::nullopt;
    json input = json::parse(json_buffer, nullptr, false);
    if (input.is_discarded()) return "sent tool input that is not JSON";
    block["input"] = std::move(input);
    return std::nullopt;
  }

  cache::Generation& gen_;
  std::string backend_;
  json message_;
  std::vector<std::string> json_buffers_;  // per block: its input_json_delta pieces so far
  bool started_ = false;
  bool stopped_ = false;
};

void append_event(std::string& out, const json& event) {
  const std::string* type = string_at(event, "type");
  dialect_util::append_sse(out, type ? *type : std::string_view("message"), event);
}

// Pieces of a JSON text for input_json_delta, a few bytes each, never inside a UTF-8
// character (each piece is a JSON string of its own).
std::vector<std::string_view> json_pieces(std::string_view text) {
  constexpr size_t kPiece = 12;
  std::vector<std::string_view> out;
  while (!text.empty()) {
    size_t n = std::min(kPiece, text.size());
    while (n < text.size() && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) ++n;
    out.push_back(text.substr(0, n));
    text.remove_prefix(n);
  }
  return out;
}

void append_block_event(std::string& out, const char* type, size_t index, const char* field, json value) {
  json event = {{"type", type}, {"index", index}};
  if (field) event[field] = std::move(value);
  append_event(out, event);
}

void append_delta(std::string& out, size_t index, json delta) {
  append_block_event(out, "content_block_delta", index, "delta", std::move(delta));
}

// One stored block as its start, deltas and stop: the SDK's accumulation of them is
// the block again.
void replay_block(std::string& out, size_t index, const json& block) {
  const std::string type = string_field(block, "type");
  json start = block;
  const std::string* text = type == "text" ? string_at(block, "text") : nullptr;
  if (text) {
    const json& citations = block.value("citations", json());
    const bool cited = citations.is_array() && !citations.empty();
    start["text"] = "";
    if (cited) start.erase("citations");  // the SDK makes the list on the first citations_delta
    append_block_event(out, "content_block_start", index, "content_block", std::move(start));
    if (cited)
      for (const json& citation : citations) append_delta(out, index, {{"type", "citations_delta"}, {"citation", citation}});
    for (auto piece : format::token_pieces(*text))
      append_delta(out, index, {{"type", "text_delta"}, {"text", piece}});
  } else if (block.is_object() && block.contains("input")) {  // tool_use, server_tool_use, ...
    start["input"] = json::object();
    append_block_event(out, "content_block_start", index, "content_block", std::move(start));
    const std::string input = dump(block.at("input"));
    for (auto piece : json_pieces(input)) append_delta(out, index, {{"type", "input_json_delta"}, {"partial_json", piece}});
  } else if (type == "thinking") {
    if (block.contains("thinking")) start["thinking"] = "";
    if (block.contains("signature")) start["signature"] = "";
    append_block_event(out, "content_block_start", index, "content_block", std::move(start));
    if (const std::string* thinking = string_at(block, "thinking"))
      for (auto piece : format::token_pieces(*thinking))
        append_delta(out, index, {{"type", "thinking_delta"}, {"thinking", piece}});
    if (const std::string* signature = string_at(block, "signature"); signature && !signature->empty())
      append_delta(out, index, {{"type", "signature_delta"}, {"signature", *signature}});
  } else {  // redacted_thinking, tool results, ...: whole in their start
    append_block_event(out, "content_block_start", index, "content_block", std::move(start));
  }
  append_block_event(out, "content_block_stop", index, nullptr, nullptr);
}

// A stored message as the API streams it (design/dialects.md 2.3).
void replay_message(std::string& out, const json& message) {
  json head = message;
  head["content"] = json::array();
  head["stop_reason"] = nullptr;
  head["stop_sequence"] = nullptr;
  if (head["usage"].is_object() && head["usage"].contains("output_tokens")) head["usage"]["output_tokens"] = 1;
  append_event(out, {{"type", "message_start"}, {"message", std::move(head)}});
  const json& content = message.value("content", json::array());
  if (content.is_array())
    for (size_t i = 0; i < content.size(); ++i) replay_block(out, i, content[i]);
  json delta = {{"stop_reason", message.value("stop_reason", json())}, {"stop_sequence", message.value("stop_sequence", json())}};
  // Newer SDKs take these from the delta (container unconditionally): sent as stored.
  for (const char* name : {"container", "stop_details"})
    if (message.contains(name)) delta[name] = message[name];
  json end = {{"type", "message_delta"}, {"delta", std::move(delta)}};
  const json& usage = message.value("usage", json());
  end["usage"] = json::object();
  if (usage.is_object() && usage.contains("output_tokens")) end["usage"]["output_tokens"] = usage["output_tokens"];
  if (message.contains("context_management")) end["context_management"] = message["context_management"];
  append_event(out, end);
  append_event(out, {{"type", "message_stop"}});
}

// A stored message's two wire forms, made once per sample in memory (Sample::rendered:
// a hit served again and again is serialised once). Only this dialect renders the
// samples of its endpoint, so the slot holds this type.
struct RenderedMessage {
  std::string body;    // the JSON answer
  std::string events;  // the replayed stream
};

const RenderedMessage& rendered(const Sample& sample) {
  return cache::rendered_once<RenderedMessage>(sample, [&](RenderedMessage& made) {
    made.body = dump(sample.choice);
    replay_message(made.events, sample.choice);
  });
}

class AnthropicStreamRenderer : public StreamRenderer {
 public:
  void replay(std::string& out, uint32_t, const Sample& sample) override { out += rendered(sample).events; }
  void live(std::string& out, uint32_t, const cache::Generation&, const json& event) override { append_event(out, event); }
  void finish(std::string&, const std::vector<const Sample*>&) override {}
  void error(std::string& out, std::string_view body) override {
    out += "event: error\ndata: ";
    out += body;
    out += "\n\n";
  }
};

// ---- the engine ----

Error engine_refusal(std::string message, std::string param) {
  return Error{ErrorKind::bad_request, "the in-process engine cannot answer this request: " + std::move(message),
               std::move(param)};
}

// Text content (a string, or text blocks) as one string; nullopt for anything else.
std::optional<std::string> plain_text(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return std::nullopt;
  std::string text;
  for (const json& block : content) {
    if (block.is_null()) continue;  // a block left out of the key
    const std::string* piece = string_field(block, "type") == "text" ? string_at(block, "text") : nullptr;
    if (!piece) return std::nullopt;
    if (!text.empty()) text += "\n";
    text += *piece;
  }
  return text;
}

class AnthropicDialect : public Dialect {
 public:
  cache::Endpoint endpoint() const override { return cache::Endpoint::messages; }
  std::string_view upstream_kind() const override { return "anthropic"; }
  bool has_n() const override { return false; }

  std::string key_context(const http::fields& headers, std::string_view, bool) const override {
    json values = json::object();
    if (std::string version = header_values(headers, kVersionField); !version.empty()) values[kVersionField] = version;
    if (std::string betas = normalised_betas(header_values(headers, kBetaField)); !betas.empty())
      values[kBetaField] = betas;
    return values.empty() ? std::string() : dump(values);
  }

  Expected<cache::CanonicalRequest, CanonicalError> canonicalize(
      std::string_view raw_body, std::string_view context, const std::vector<std::string>& ignore_paths) const override {
    auto parsed = cache::parse_canonical_json(raw_body);
    if (!parsed) return parsed.error();
    json client = std::move(parsed.value());
    if (!client.is_object()) return invalid("request body must be a JSON object");
    cache::CanonicalRequest out;
    if (auto stream = client.find("stream"); stream != client.end()) {
      if (!stream->is_null() && !stream->is_boolean()) return invalid("stream must be a boolean", "stream");
      out.stream = stream->is_boolean() && stream->get<bool>();
      client.erase(stream);
    }
    // The headers' values go into the key as body fields (an API body never has
    // hyphenated keys). Without a context (a canonical body read back) the body's own
    // are the key's.
    json headers = json::object();
    if (!context.empty()) {
      headers = json::parse(context, nullptr, false);
      if (!headers.is_object()) return invalid("malformed anthropic key context");
      client.erase(kVersionField);
      client.erase(kBetaField);
    }
    const std::string* model = string_at(client, "model");
    if (!model || model->empty()) return invalid("model: a non-empty string is required", "model");
    auto max_tokens = client.find("max_tokens");
    if (max_tokens == client.end() || !max_tokens->is_number_integer() ||
        (!max_tokens->is_number_unsigned() && max_tokens->get<int64_t>() < 1) ||
        (max_tokens->is_number_unsigned() && max_tokens->get<uint64_t>() == 0))
      return invalid("max_tokens: a positive integer is required", "max_tokens");
    auto messages = client.find("messages");
    if (messages == client.end() || !messages->is_array()) return invalid("messages: an array is required", "messages");
    if (auto temperature = client.find("temperature"); temperature != client.end() && !temperature->is_null()) {
      if (!temperature->is_number()) return invalid("temperature: a number is required", "temperature");
      out.temperature = temperature->get<double>();
    }
    out.model = *model;
    out.n = 1;

    json key = client;
    for (const auto& path : ignore_paths) dialect_util::erase_path(key, path);
    drop_unshaping(key);
    // The API's default, made explicit; top_p and top_k have none that every model
    // takes (newer models refuse them), so their absence stays absent.
    if (!key.contains("temperature")) {
      key["temperature"] = 1;
      out.defaulted.emplace_back("temperature");
    }
    for (auto& [name, value] : headers.items())
      if (value.is_string()) key[name] = value;

    // What upstream_body would make of the key; when that is not the client's body,
    // the client's is forwarded (metadata, cache_control, ignored paths unchanged).
    json rebuilt = key;
    for (const auto& name : out.defaulted) rebuilt.erase(name);
    if (!context.empty()) {
      rebuilt.erase(kVersionField);
      rebuilt.erase(kBetaField);
    }
    if (rebuilt != client) out.forward = std::move(client);
    out.body = std::move(key);
    cache::seal(out);
    return out;
  }

  std::optional<std::string> uncacheable(const cache::CanonicalRequest& request) const override {
    const json& body = request.forward.is_object() ? request.forward : request.body;
    auto container = body.find("container");
    if (container != body.end() && !container->is_null())
      return std::string("container: a code-execution container keeps its state upstream");
    return std::nullopt;
  }

  std::string upstream_target(const cache::CanonicalRequest&, bool, std::string_view client_query) const override {
    std::string target = "/messages";
    if (!client_query.empty()) {
      target += '?';
      target += client_query;
    }
    return target;
  }

  json upstream_body(const cache::CanonicalRequest& request, uint32_t, bool stream) const override {
    json body = request.forward.is_object() ? request.forward : request.body;
    if (!request.forward.is_object())
      for (const auto& name : request.defaulted) body.erase(name);
    // The headers themselves go upstream from the client.
    body.erase(kVersionField);
    body.erase(kBetaField);
    if (stream) body["stream"] = true;
    return body;
  }

  Expected<std::vector<Sample>, std::string> samples_from_json(const json& body, uint32_t n,
                                                               std::string_view backend) const override {
    if (n != 1) return "cannot answer " + std::to_string(n) + " samples in one call";
    auto sample = message_sample(body, backend);
    if (!sample) return sample.error();
    std::vector<Sample> samples;
    samples.push_back(std::move(sample.value()));
    return samples;
  }

  std::unique_ptr<StreamReader> stream_reader(cache::Generation& gen, std::string_view backend) const override {
    return std::make_unique<AnthropicStreamReader>(gen, backend);
  }

  std::string json_body(const std::vector<const Sample*>& samples, const RenderOptions&) const override {
    return samples.empty() ? std::string("{}") : rendered(*samples.front()).body;
  }

  std::unique_ptr<StreamRenderer> stream_renderer(const RenderOptions&) const override {
    return std::make_unique<AnthropicStreamRenderer>();
  }

  std::string error_body(unsigned status, std::string_view body) const override {
    json parsed = json::parse(body, nullptr, false);
    if (string_field(parsed, "type") == "error" && parsed["error"].is_object()) return std::string(body);
    std::string message(body);
    if (parsed.is_object() && parsed["error"].is_object()) {
      if (const std::string* m = string_at(parsed["error"], "message")) message = *m;
    } else if (parsed.is_object()) {
      if (const std::string* m = string_at(parsed, "message")) message = *m;
    }
    return dump({{"type", "error"}, {"error", {{"type", error_type_of_status(status)}, {"message", message}}}});
  }

  void error_headers(unsigned status, http::fields& headers) const override {
    // The SDK retries on x-should-retry before anything else; without it, a 4xx it
    // does not know as transient would be retried all the same by some versions.
    if (status / 100 == 4 && status != 408 && status != 409 && status != 429) headers.set("x-should-retry", "false");
  }

  Result<json> engine_chat_body(const cache::CanonicalRequest& request) const override {
    const json& body = request.body;
    static const char* const kSpoken[] = {"model", "messages", "system", "max_tokens", "temperature", "top_p",
                                          "top_k", "stop_sequences", "tool_choice", kVersionField, kBetaField};
    for (auto& [name, value] : body.items()) {
      if (std::find_if(std::begin(kSpoken), std::end(kSpoken), [&](const char* n) { return name == n; }) !=
          std::end(kSpoken))
        continue;
      if (name == "tools" && value.is_array() && value.empty()) continue;
      if (name == "thinking" && string_field(value, "type") == "disabled") continue;
      return engine_refusal(name == "tools" ? "tools are not supported" : "it does not support " + name, name);
    }
    json messages = json::array();
    if (auto system = body.find("system"); system != body.end() && !system->is_null()) {
      auto text = plain_text(*system);
      if (!text) return engine_refusal("system must be text", "system");
      messages.push_back({{"role", "system"}, {"content", *text}});
    }
    const json turns = body.value("messages", json::array());
    for (size_t i = 0; i < turns.size(); ++i) {
      const std::string param = "messages[" + std::to_string(i) + "]";
      const std::string role = string_field(turns[i], "role");
      if (role != "user" && role != "assistant") return engine_refusal(param + ".role must be user or assistant", param + ".role");
      auto text = plain_text(turns[i].value("content", json()));
      if (!text) return engine_refusal("only text content (no tool_use, tool_result or images)", param + ".content");
      messages.push_back({{"role", role}, {"content", *text}});
    }
    json chat = {{"model", request.model}, {"messages", std::move(messages)}, {"max_tokens", body.value("max_tokens", json())}};
    for (const char* name : {"temperature", "top_p", "top_k"})
      if (auto it = body.find(name); it != body.end()) chat[name] = *it;
    if (auto it = body.find("stop_sequences"); it != body.end()) chat["stop"] = *it;
    return chat;
  }

  Sample from_engine_sample(Sample chat_sample, const cache::CanonicalRequest& request) const override {
    const json& message = chat_sample.choice.value("message", json());
    const std::string text = string_field(message, "content");
    const std::string stop_reason = chat_sample.finish_reason == "length" ? "max_tokens" : "end_turn";
    if (chat_sample.model.empty()) chat_sample.model = request.model;
    chat_sample.choice = {{"id", dialect_util::new_id("msg_")},
                          {"type", "message"},
                          {"role", "assistant"},
                          {"model", chat_sample.model},
                          {"content", json::array({{{"type", "text"}, {"text", text}}})},
                          {"stop_reason", stop_reason},
                          {"stop_sequence", nullptr},
                          {"usage", {{"input_tokens", chat_sample.prompt_tokens}, {"output_tokens", chat_sample.completion_tokens}}}};
    chat_sample.finish_reason = stop_reason;
    return chat_sample;
  }
};

}  // namespace

std::unique_ptr<Dialect> make_anthropic() { return std::make_unique<AnthropicDialect>(); }

}  // namespace reprise::dialects
