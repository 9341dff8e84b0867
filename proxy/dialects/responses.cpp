// The OpenAI Responses API (POST /v1/responses; DESIGN.md section 9, design/dialects.md
// section 1). It has no n: every call is one sample, and a sample is the whole response
// object as the upstream answered it, ids included (a client's next turn names them in
// previous_response_id or item_reference, so a replay must give them back exactly). Its
// stream is a sequence of typed events with sequence numbers and no [DONE]: a miss
// relays the upstream's events as they come; a hit synthesises the same sequence from
// the stored object, which the SDKs accumulate into that object again.
#include <chrono>
#include <optional>

#include "proxy/dialects/dialects.hpp"
#include "proxy/openai_format.hpp"

namespace reprise::dialects {
namespace {

using cache::GenerationError;
using cache::Sample;
using nlohmann::json;
using dialect_util::dump;
using dialect_util::field;
using dialect_util::now_seconds;
using dialect_util::string_field;




uint32_t count_field(const json& object, const char* name) {
  const json& value = field(object, name);
  return value.is_number_unsigned() ? value.get<uint32_t>() : 0;
}


// Fields that never shape a sample (design/dialects.md 1.1): out of the key, forwarded
// as the client sent them. `background` is among them only when false: a background
// request is relayed uncached, so it stays in the body for uncacheable() to see.
constexpr const char* kNotInKey[] = {"metadata",         "user",           "safety_identifier",
                                     "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options",
                                     "store",            "service_tier"};

// The documented defaults, made explicit so that leaving one out and sending it give
// one key.
void apply_defaults(json& body, std::vector<std::string>& defaulted) {
  auto fill = [&](const char* name, json value) {
    if (body.contains(name)) return;
    body[name] = std::move(value);
    defaulted.emplace_back(name);
  };
  fill("temperature", 1);
  fill("top_p", 1);
  fill("parallel_tool_calls", true);
  fill("truncation", "disabled");
}

// The Responses error of a stream (an "error" event, or the error of a
// response.failed) as the OpenAI-shaped body its clients get.
GenerationError stream_error(const json& error) {
  std::string code = string_field(error, "code");
  unsigned status = 502;
  if (const json& s = field(error, "status"); s.is_number_unsigned() && s.get<unsigned>() >= 400 && s.get<unsigned>() < 600)
    status = s.get<unsigned>();
  else if (code == "rate_limit_exceeded" || code == "insufficient_quota")
    status = 429;
  std::string type = string_field(error, "type");
  if (type.empty()) type = status == 429 ? "rate_limit_error" : "server_error";
  std::string message = string_field(error, "message");
  if (message.empty()) message = "the upstream reported an error in its stream";
  json body = {{"error",
                {{"message", message}, {"type", type}, {"code", field(error, "code")}, {"param", field(error, "param")}}}};
  return GenerationError{status, dump(body), {}};
}

// Why a response object is no complete success, or nothing when it is one. An
// "incomplete" answer cut by max_output_tokens or the content filter is the
// Responses API's finish_reason "length" / "content_filter": a whole answer to the
// request as asked, stored like those (DESIGN.md section 1); anything else is not.
std::optional<std::string> not_completed(const json& response) {
  if (!response.is_object()) return std::string("returned a response that is not an object");
  std::string status = string_field(response, "status");
  if (status == "completed") return std::nullopt;
  std::string reason = string_field(field(response, "incomplete_details"), "reason");
  if (status == "incomplete" && (reason == "max_output_tokens" || reason == "content_filter")) return std::nullopt;
  if (status.empty()) return std::string("returned a response without a status");
  return "returned a response with status \"" + status + "\"" + (reason.empty() ? "" : " (" + reason + ")") +
         ": not a complete answer";
}

Sample sample_of(json response, std::string_view backend) {
  Sample s;
  const json& usage = field(response, "usage");
  s.prompt_tokens = count_field(usage, "input_tokens");
  s.completion_tokens = count_field(usage, "output_tokens");
  s.model = string_field(response, "model");
  const json& created = field(response, "created_at");
  s.created = created.is_number_integer() ? created.get<int64_t>() : now_seconds();
  s.finish_reason = string_field(response, "status");
  s.backend = std::string(backend);
  s.choice = std::move(response);
  return s;
}

StreamFault malformed(std::string what) { return StreamFault{std::nullopt, std::move(what)}; }

// An upstream stream: every event goes to the waiting clients as it came; the
// response of response.completed is the sample.
class ResponsesStreamReader : public StreamReader {
 public:
  ResponsesStreamReader(cache::Generation& gen, std::string_view backend) : gen_(gen), backend_(backend) {}

  std::optional<StreamFault> on_event(std::string_view data) override {
    if (data == "[DONE]") return std::nullopt;  // not sent by OpenAI, tolerated as the SDKs do
    json event = json::parse(data, nullptr, false);
    if (!event.is_object() || !field(event, "type").is_string())
      return malformed("sent a Responses stream event that is not a JSON object with a type");
    const std::string type = event["type"].get<std::string>();
    if (!identified_) {  // before the first publish, as Generation asks
      identified_ = true;
      gen_.set_identity(string_field(field(event, "response"), "model"), {});
    }
    if (type == "error") return StreamFault{stream_error(event), {}};
    if (type == "response.failed") return StreamFault{stream_error(field(field(event, "response"), "error")), {}};
    if (type == "response.completed" || type == "response.incomplete") terminal_ = field(event, "response");
    gen_.publish(0, std::move(event));
    return std::nullopt;
  }

  Expected<std::vector<Sample>, std::string> finish() override {
    if (terminal_.is_null()) return std::string("ended the stream without response.completed");
    if (auto problem = not_completed(terminal_)) return *problem;
    std::vector<Sample> samples;
    samples.push_back(sample_of(std::move(terminal_), backend_));
    return samples;
  }

 private:
  cache::Generation& gen_;
  std::string backend_;
  bool identified_ = false;
  json terminal_;  // the response of response.completed (or .incomplete)
};

// Writes the events of one response; sequence numbers count from 0 for a replay, and
// follow the upstream's own for a live relay.
// A stored response's two wire forms, made once per sample in memory (Sample::rendered:
// a hit served again and again is serialised once). Only this dialect renders the
// samples of its endpoint, so the slot holds this type.
struct RenderedResponse {
  std::string body;    // the JSON answer
  std::string events;  // the replayed stream, sequence numbers from 0
  uint64_t count = 0;  // its events
};
const RenderedResponse& rendered(const Sample& sample);

class ResponsesStreamRenderer : public StreamRenderer {
 public:
  void replay(std::string& out, uint32_t, const Sample& sample) override {
    if (next_ == 0) {  // a response's first events: the stored sample's own replay
      const RenderedResponse& made = rendered(sample);
      out += made.events;
      next_ = made.count;
      return;
    }
    replay_events(out, sample);
  }

  uint64_t next_sequence() const { return next_; }

  // The replay of `sample` from sequence number next_.
  void replay_events(std::string& out, const Sample& sample) {
    const json& response = sample.choice;
    json opening = response.is_object() ? response : json::object();
    opening["status"] = "in_progress";
    opening["output"] = json::array();
    for (const char* later : {"usage", "completed_at", "incomplete_details", "error"})
      if (opening.contains(later)) opening[later] = nullptr;
    emit(out, {{"type", "response.created"}, {"response", opening}});
    emit(out, {{"type", "response.in_progress"}, {"response", std::move(opening)}});
    const json& output = field(response, "output");
    if (output.is_array())
      for (size_t i = 0; i < output.size(); ++i) replay_item(out, i, output[i]);
    std::string status = string_field(response, "status");
    if (status != "incomplete" && status != "failed") status = "completed";
    emit(out, {{"type", "response." + status}, {"response", response}});
  }

  void live(std::string& out, uint32_t, const cache::Generation&, const json& event) override {
    if (const json& seq = field(event, "sequence_number"); seq.is_number_unsigned()) next_ = seq.get<uint64_t>() + 1;
    dialect_util::append_sse(out, string_field(event, "type"), event);
  }

  void finish(std::string&, const std::vector<const Sample*>&) override {}  // no [DONE] in Responses streams

  void error(std::string& out, std::string_view body) override {
    const json parsed = json::parse(body, nullptr, false);
    const json& error = field(parsed, "error");
    std::string message = string_field(error, "message");
    json event = {{"type", "error"},
                  {"code", field(error, "code").is_null() ? field(error, "type") : field(error, "code")},
                  {"message", message.empty() ? std::string(body) : message},
                  {"param", field(error, "param")},
                  {"sequence_number", next_++}};
    dialect_util::append_sse(out, "error", event);
  }

 private:
  void emit(std::string& out, json event) {
    event["sequence_number"] = next_++;
    dialect_util::append_sse(out, event["type"].get<std::string>(), event);
  }

  // One output item: added, its content as the upstream streams it, done.
  void replay_item(std::string& out, size_t index, const json& item) {
    const std::string type = string_field(item, "type");
    const json id = field(item, "id");
    json added = item;
    if (type == "message") {
      added["status"] = "in_progress";
      added["content"] = json::array();
    } else if (type == "function_call") {
      added["status"] = "in_progress";
      added["arguments"] = "";
    }
    emit(out, {{"type", "response.output_item.added"}, {"output_index", index}, {"item", std::move(added)}});
    if (type == "message") {
      const json& content = field(item, "content");
      if (content.is_array())
        for (size_t k = 0; k < content.size(); ++k) replay_part(out, id, index, k, content[k]);
    } else if (type == "function_call") {
      const std::string arguments = string_field(item, "arguments");
      for (std::string_view piece : format::token_pieces(arguments))
        emit(out, {{"type", "response.function_call_arguments.delta"},
                   {"item_id", id},
                   {"output_index", index},
                   {"delta", piece}});
      json done = {{"type", "response.function_call_arguments.done"},
                   {"item_id", id},
                   {"output_index", index},
                   {"arguments", arguments}};
      if (item.contains("name")) done["name"] = item["name"];
      emit(out, std::move(done));
    }
    emit(out, {{"type", "response.output_item.done"}, {"output_index", index}, {"item", item}});
  }

  // One content part of a message: its text (or refusal) token by token, its
  // annotations one by one, then the whole part.
  void replay_part(std::string& out, const json& item_id, size_t index, size_t k, const json& part) {
    const std::string type = string_field(part, "type");
    const char* text_key = type == "output_text" ? "text" : type == "refusal" ? "refusal" : nullptr;
    json head = {{"item_id", item_id}, {"output_index", index}, {"content_index", k}};
    json added = part;
    if (text_key) added[text_key] = "";
    if (added.contains("annotations")) added["annotations"] = json::array();
    if (added.contains("logprobs")) added["logprobs"] = json::array();
    json event = head;
    event["type"] = "response.content_part.added";
    event["part"] = std::move(added);
    emit(out, std::move(event));
    if (text_key) {
      const std::string text = string_field(part, text_key);
      const std::string family = type == "output_text" ? "response.output_text" : "response.refusal";
      for (std::string_view piece : format::token_pieces(text)) {
        json delta = head;
        delta["type"] = family + ".delta";
        delta["delta"] = piece;
        if (type == "output_text") delta["logprobs"] = json::array();
        emit(out, std::move(delta));
      }
      const json& annotations = field(part, "annotations");
      if (annotations.is_array())
        for (size_t a = 0; a < annotations.size(); ++a) {
          json added_annotation = head;
          added_annotation["type"] = "response.output_text.annotation.added";
          added_annotation["annotation_index"] = a;
          added_annotation["annotation"] = annotations[a];
          emit(out, std::move(added_annotation));
        }
      json done = head;
      done["type"] = family + ".done";
      done[text_key] = text;
      if (type == "output_text") done["logprobs"] = part.contains("logprobs") ? part["logprobs"] : json::array();
      emit(out, std::move(done));
    }
    event = head;
    event["type"] = "response.content_part.done";
    event["part"] = part;
    emit(out, std::move(event));
  }

  uint64_t next_ = 0;
};

// The text of a message's content as the engine can say it, or nullopt when it holds
// something else (an image, a file).
std::optional<std::string> plain_text(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return std::nullopt;
  std::string text;
  for (const json& part : content) {
    const std::string type = string_field(part, "type");
    if (type != "input_text" && type != "output_text") return std::nullopt;
    text += string_field(part, "text");
  }
  return text;
}

const RenderedResponse& rendered(const Sample& sample) {
  return cache::rendered_once<RenderedResponse>(sample, [&](RenderedResponse& made) {
    made.body = dump(sample.choice);
    ResponsesStreamRenderer renderer;
    renderer.replay_events(made.events, sample);
    made.count = renderer.next_sequence();
  });
}

class ResponsesDialect : public Dialect {
 public:
  cache::Endpoint endpoint() const override { return cache::Endpoint::responses; }
  std::string_view upstream_kind() const override { return "openai"; }
  bool has_n() const override { return false; }

  Expected<cache::CanonicalRequest, cache::CanonicalError> canonicalize(
      std::string_view raw_body, std::string_view, const std::vector<std::string>& ignore_paths) const override {
    auto parsed = cache::parse_canonical_json(raw_body);
    if (!parsed) return parsed.error();
    json& client = parsed.value();
    if (!client.is_object()) return cache::CanonicalError{"the request body must be a JSON object", {}};
    cache::CanonicalRequest out;
    const json& model = field(client, "model");
    if (!model.is_string() || model.get_ref<const std::string&>().empty())
      return cache::CanonicalError{"you must provide a model parameter", "model"};
    out.model = model.get<std::string>();
    if (const json& stream = field(client, "stream"); !stream.is_null()) {
      if (!stream.is_boolean()) return cache::CanonicalError{"stream must be a boolean", "stream"};
      out.stream = stream.get<bool>();
    }
    if (const json& temperature = field(client, "temperature"); !temperature.is_null()) {
      if (!temperature.is_number()) return cache::CanonicalError{"temperature must be a number", "temperature"};
      out.temperature = temperature.get<double>();
    }
    out.n = 1;
    // How the answer is delivered, not what it is: neither in the key nor forwarded
    // (upstream_body asks for a stream itself).
    client.erase("stream");
    client.erase("stream_options");

    json body = client;
    for (const char* name : kNotInKey) body.erase(name);
    if (field(body, "background") != json(true)) body.erase("background");
    for (auto it = body.begin(); it != body.end();) it = it->is_null() ? body.erase(it) : std::next(it);  // null: absent
    for (const auto& path : ignore_paths) dialect_util::erase_path(body, path);
    apply_defaults(body, out.defaulted);
    out.body = std::move(body);
    if (without_defaulted(out) != client) out.forward = std::move(client);
    cache::seal(out);
    return out;
  }

  std::optional<std::string> uncacheable(const cache::CanonicalRequest& request) const override {
    if (!field(request.body, "conversation").is_null())
      return std::string("conversation: the upstream keeps the conversation, and this call adds to it");
    if (field(request.body, "background") == json(true))
      return std::string("background: the upstream runs it and keeps the result");
    if (!field(request.body, "prompt").is_null())
      return std::string("prompt: a template stored upstream, which may change under the same id");
    return std::nullopt;
  }

  std::string upstream_target(const cache::CanonicalRequest&, bool, std::string_view client_query) const override {
    std::string target = "/responses";
    if (!client_query.empty()) target += "?" + std::string(client_query);
    return target;
  }

  json upstream_body(const cache::CanonicalRequest& request, uint32_t, bool stream) const override {
    json body = request.forward.is_object() ? request.forward : without_defaulted(request);
    if (stream) body["stream"] = true;
    return body;
  }

  Expected<std::vector<Sample>, std::string> samples_from_json(const json& body, uint32_t,
                                                               std::string_view backend) const override {
    if (auto problem = not_completed(body)) return *problem;
    std::vector<Sample> samples;
    samples.push_back(sample_of(body, backend));
    return samples;
  }

  std::unique_ptr<StreamReader> stream_reader(cache::Generation& gen, std::string_view backend) const override {
    return std::make_unique<ResponsesStreamReader>(gen, backend);
  }

  std::string json_body(const std::vector<const Sample*>& samples, const RenderOptions&) const override {
    return samples.empty() ? std::string("{}") : rendered(*samples.front()).body;
  }

  std::unique_ptr<StreamRenderer> stream_renderer(const RenderOptions&) const override {
    return std::make_unique<ResponsesStreamRenderer>();
  }

  std::string error_body(unsigned, std::string_view body) const override { return std::string(body); }

  Result<json> engine_chat_body(const cache::CanonicalRequest& request) const override {
    const json& body = request.body;
    auto cannot = [](const std::string& what, const char* param) -> Result<json> {
      return Error{ErrorKind::bad_request, "the in-process engine cannot answer " + what, param};
    };
    if (const json& tools = field(body, "tools"); tools.is_array() && !tools.empty()) return cannot("tools", "tools");
    if (!field(body, "previous_response_id").is_null())
      return cannot("previous_response_id (it keeps no responses)", "previous_response_id");
    if (const json& format = field(field(body, "text"), "format"); !format.is_null() && string_field(format, "type") != "text")
      return cannot("a text.format other than text", "text.format");
    json messages = json::array();
    if (const json& instructions = field(body, "instructions"); instructions.is_string())
      messages.push_back({{"role", "system"}, {"content", instructions}});
    const json& input = field(body, "input");
    if (input.is_string()) {
      messages.push_back({{"role", "user"}, {"content", input}});
    } else if (input.is_array()) {
      for (const json& item : input) {
        if (item.is_null()) continue;  // an ignore path's hole
        const std::string type = string_field(item, "type");
        std::string role = string_field(item, "role");
        if ((type != "message" && !type.empty()) || role.empty())
          return cannot("input items of type \"" + (type.empty() ? std::string("?") : type) + "\"", "input");
        auto text = plain_text(field(item, "content"));
        if (!text) return cannot("input content other than text", "input");
        if (role == "developer") role = "system";
        messages.push_back({{"role", role}, {"content", *text}});
      }
    } else if (!input.is_null()) {
      return cannot("this input", "input");
    }
    if (messages.empty()) return cannot("a request without input", "input");
    json chat = {{"model", request.model}, {"messages", std::move(messages)}};
    for (const char* name : {"temperature", "top_p"})
      if (body.contains(name)) chat[name] = body[name];
    if (const json& max = field(body, "max_output_tokens"); !max.is_null()) chat["max_tokens"] = max;
    return chat;
  }

  Sample from_engine_sample(Sample chat_sample, const cache::CanonicalRequest& request) const override {
    const json& body = request.body;
    const json& sent = request.forward.is_object() ? request.forward : body;
    const bool cut = chat_sample.finish_reason == "length";
    const std::string text = string_field(field(chat_sample.choice, "message"), "content");
    json message = {{"type", "message"},
                    {"id", dialect_util::new_id("msg_")},
                    {"status", cut ? "incomplete" : "completed"},
                    {"role", "assistant"},
                    {"content", json::array({{{"type", "output_text"}, {"text", text}, {"annotations", json::array()}}})}};
    auto echo = [&](const json& from, const char* name, json otherwise) {
      const json& value = field(from, name);
      return value.is_null() ? otherwise : value;
    };
    json response = {
        {"id", dialect_util::new_id("resp_")},
        {"object", "response"},
        {"created_at", chat_sample.created},
        {"status", cut ? "incomplete" : "completed"},
        {"background", false},
        {"error", nullptr},
        {"incomplete_details", cut ? json{{"reason", "max_output_tokens"}} : json(nullptr)},
        {"instructions", echo(body, "instructions", nullptr)},
        {"max_output_tokens", echo(body, "max_output_tokens", nullptr)},
        {"model", chat_sample.model.empty() ? request.model : chat_sample.model},
        {"output", json::array({std::move(message)})},
        {"parallel_tool_calls", echo(body, "parallel_tool_calls", true)},
        {"previous_response_id", nullptr},
        {"reasoning", echo(body, "reasoning", {{"effort", nullptr}, {"summary", nullptr}})},
        {"store", echo(sent, "store", true)},
        {"temperature", echo(body, "temperature", 1)},
        {"text", echo(body, "text", {{"format", {{"type", "text"}}}})},
        {"tool_choice", echo(body, "tool_choice", "auto")},
        {"tools", json::array()},
        {"top_p", echo(body, "top_p", 1)},
        {"truncation", echo(body, "truncation", "disabled")},
        {"usage",
         {{"input_tokens", chat_sample.prompt_tokens},
          {"output_tokens", chat_sample.completion_tokens},
          {"total_tokens", chat_sample.prompt_tokens + chat_sample.completion_tokens}}},
        {"user", echo(sent, "user", nullptr)},
        {"metadata", echo(sent, "metadata", json::object())}};
    chat_sample.finish_reason = cut ? "incomplete" : "completed";
    chat_sample.system_fingerprint.clear();
    chat_sample.choice = std::move(response);
    return chat_sample;  // energy_j, tokens, model, created and backend kept
  }

 private:
  // The key body as the upstream must see it: without the defaults the client left out
  // (some models refuse a parameter even at its default value).
  static json without_defaulted(const cache::CanonicalRequest& request) {
    json body = request.body.is_object() ? request.body : json::object();
    for (const auto& name : request.defaulted) body.erase(name);
    return body;
  }
};

}  // namespace

std::unique_ptr<Dialect> make_responses() { return std::make_unique<ResponsesDialect>(); }

}  // namespace reprise::dialects
