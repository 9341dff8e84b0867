// The fake's Anthropic Messages API (dialects.hpp): POST /v1/messages as the real API
// answers it (design/dialects.md section 2): a message of text, or of a short text and
// a tool_use block when tools are given; usage; the exact event sequence of a stream,
// with its `event:` lines and a ping; errors in Anthropic's shape.
#include <algorithm>

#include "dialects.hpp"

namespace reprise::fake {

namespace {

Reply anthropic_error(unsigned status, std::string_view type, std::string_view message) {
  Reply r;
  r.status = status;
  r.body["type"] = "error";
  r.body["error"] = {{"type", type}, {"message", message}};
  r.body["request_id"] = "req_fake";
  return r;
}

Reply invalid(std::string_view message) { return anthropic_error(400, "invalid_request_error", message); }

std::string event(std::string_view name, const ojson& data) {
  return "event: " + std::string(name) + "\ndata: " + data.dump() + "\n\n";
}

// Words of text content: a string, or the text of text blocks (tool results included).
int64_t content_words(const json& content) {
  if (content.is_string()) return count_words(content.get_ref<const std::string&>());
  int64_t words = 0;
  if (content.is_array())
    for (const json& block : content) {
      if (!block.is_object()) continue;
      if (block.contains("text") && block["text"].is_string()) words += count_words(block["text"].get_ref<const std::string&>());
      if (block.contains("content")) words += content_words(block["content"]);
    }
  return words;
}

bool has_tool_result(const json& message) {
  const json content = message.value("content", json());
  if (!content.is_array()) return false;
  return std::any_of(content.begin(), content.end(), [](const json& block) {
    return block.is_object() && block.value("type", json()) == "tool_result";
  });
}

// Pieces of a JSON text, as the API streams tool input: a few characters each.
std::vector<std::string> json_pieces(const std::string& text) {
  std::vector<std::string> pieces{""};  // the API opens with an empty partial_json
  for (size_t at = 0; at < text.size();) {
    size_t n = std::min<size_t>(10, text.size() - at);
    while (at + n < text.size() && (static_cast<unsigned char>(text[at + n]) & 0xC0) == 0x80) ++n;  // whole UTF-8 characters
    pieces.push_back(text.substr(at, n));
    at += n;
  }
  return pieces;
}

}  // namespace

Reply anthropic_messages(const json& req, const CallContext& ctx) {
  auto model = req.find("model");
  if (model == req.end() || !model->is_string() || model->get_ref<const std::string&>().empty())
    return invalid("model: Field required");
  auto max_tokens = req.find("max_tokens");
  if (max_tokens == req.end() || !max_tokens->is_number_integer() || max_tokens->get<int64_t>() < 1)
    return invalid("max_tokens: Field required (a positive integer)");
  auto messages = req.find("messages");
  if (messages == req.end() || !messages->is_array() || messages->empty())
    return invalid("messages: Field required (a non-empty array)");
  bool stream = false;
  if (auto it = req.find("stream"); it != req.end() && !it->is_null()) {
    if (!it->is_boolean()) return invalid("stream: Input should be a valid boolean");
    stream = it->get<bool>();
  }
  int64_t prompt_tokens = 0;
  if (auto system = req.find("system"); system != req.end()) prompt_tokens += content_words(*system);
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const json role = m.is_object() ? m.value("role", json()) : json();
    if (role != "user" && role != "assistant")
      return invalid("messages." + std::to_string(i) + ".role: Input should be 'user' or 'assistant'");
    prompt_tokens += 3 + content_words(m.value("content", json()));
  }
  const json tools = req.value("tools", json::array());
  if (!tools.is_array()) return invalid("tools: Input should be a valid list");
  const bool call_tool = !tools.empty() && !has_tool_result(messages->back());

  SampledText sampled = sample_text(ctx, max_tokens->get<int64_t>());
  const std::string id = std::to_string(ctx.id);
  ojson text_block = {{"type", "text"}, {"text", sampled.text}};
  std::vector<std::string> text_pieces = sampled.pieces;
  ojson tool_block;
  std::string input_json;
  int64_t output_tokens = int64_t(sampled.pieces.size());
  std::string stop_reason = sampled.truncated ? "max_tokens" : "end_turn";
  if (call_tool) {
    // A short preamble, then the call: a string (fresh per call) for every required
    // property of the first tool's input schema.
    const json& tool = tools[0];
    const std::string name = tool.is_object() && tool.value("name", json()).is_string() ? tool["name"].get<std::string>() : "tool";
    text_block["text"] = "I'll use " + name + ".";
    text_pieces = {"I'll", " use", " " + name + "."};
    ojson input = required_strings(tool.is_object() ? tool.value("input_schema", json()) : json(),
                                   [&] { return sampled.text; });
    tool_block = {{"type", "tool_use"}, {"id", "toolu_fake_" + id}, {"name", name}, {"input", input}};
    input_json = input.dump();
    output_tokens = 3 + int64_t(json_pieces(input_json).size());
    stop_reason = "tool_use";
  }

  ojson usage = {{"input_tokens", prompt_tokens}, {"cache_creation_input_tokens", 0}, {"cache_read_input_tokens", 0},
                 {"output_tokens", output_tokens}, {"service_tier", "standard"}};
  ojson message = {{"id", "msg_fake_" + id}, {"type", "message"}, {"role", "assistant"}, {"model", *model},
                   {"content", ojson::array()}, {"stop_reason", stop_reason}, {"stop_sequence", nullptr},
                   {"usage", usage}};
  Reply r;
  r.samples = 1;
  r.prompt_tokens = prompt_tokens;
  r.completion_tokens = output_tokens;
  r.longest_choice = output_tokens;
  if (!stream) {
    message["content"].push_back(text_block);
    if (call_tool) message["content"].push_back(tool_block);
    r.body = std::move(message);
    return r;
  }

  // The stream: design/dialects.md 2.3, event for event.
  r.stream = true;
  auto emit = [&](std::string_view name, const ojson& data) {
    r.events.push_back(event(name, data));
    r.paced.push_back(false);
  };
  ojson head = message;
  head["stop_reason"] = nullptr;
  head["usage"]["output_tokens"] = 1;
  emit("message_start", {{"type", "message_start"}, {"message", head}});
  emit("content_block_start", {{"type", "content_block_start"}, {"index", 0}, {"content_block", {{"type", "text"}, {"text", ""}}}});
  emit("ping", {{"type", "ping"}});
  for (const auto& piece : text_pieces)
    emit("content_block_delta",
         {{"type", "content_block_delta"}, {"index", 0}, {"delta", {{"type", "text_delta"}, {"text", piece}}}});
  emit("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}});
  if (call_tool) {
    ojson start = tool_block;
    start["input"] = ojson::object();
    emit("content_block_start", {{"type", "content_block_start"}, {"index", 1}, {"content_block", start}});
    for (const auto& piece : json_pieces(input_json))
      emit("content_block_delta", {{"type", "content_block_delta"},
                                   {"index", 1},
                                   {"delta", {{"type", "input_json_delta"}, {"partial_json", piece}}}});
    emit("content_block_stop", {{"type", "content_block_stop"}, {"index", 1}});
  }
  emit("message_delta", {{"type", "message_delta"},
                         {"delta", {{"stop_reason", stop_reason}, {"stop_sequence", nullptr}}},
                         {"usage", {{"output_tokens", output_tokens}}}});
  emit("message_stop", {{"type", "message_stop"}});
  return r;
}

Reply anthropic_count_tokens(const json& req) {
  auto messages = req.find("messages");
  if (!req.contains("model") || messages == req.end() || !messages->is_array())
    return invalid("model and messages: Field required");
  int64_t tokens = 0;
  if (auto system = req.find("system"); system != req.end()) tokens += content_words(*system);
  for (const json& m : *messages) tokens += 3 + (m.is_object() ? content_words(m.value("content", json())) : 0);
  Reply r;
  r.body = {{"input_tokens", tokens}};
  return r;
}

Reply as_anthropic_error(Reply r) {
  if (r.status / 100 == 2 || r.body.value("type", ojson()) == "error") return r;
  const ojson& error = r.body.value("error", ojson::object());
  const std::string message = error.is_object() && error.value("message", ojson()).is_string()
                                  ? error["message"].get<std::string>()
                                  : std::string("error");
  const char* type = r.status == 401   ? "authentication_error"
                     : r.status == 404 ? "not_found_error"
                     : r.status == 429 ? "rate_limit_error"
                     : r.status == 529 ? "overloaded_error"
                     : r.status >= 500 ? "api_error"
                                       : "invalid_request_error";
  return anthropic_error(r.status, type, message);
}

}  // namespace reprise::fake
