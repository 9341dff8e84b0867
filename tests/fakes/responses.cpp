// POST /v1/responses as the OpenAI Responses API answers it (design/dialects.md
// section 1): a response object with one output item, fresh text per call (the word
// list, as chat samples it), a function_call item when a function tool is given and
// the input does not end with its output, usage, and the streamed event sequence with
// its sequence numbers and no [DONE].
#include <algorithm>

#include "dialects.hpp"

namespace reprise::fake {
namespace {

Reply invalid(std::string_view message, std::string_view param, std::string_view code = {}) {
  return error_reply(400, "invalid_request_error", message, param, code);
}

// The first function tool, or null; an error reply for a malformed tools list.
std::optional<Reply> first_function_tool(const json& req, const json*& tool) {
  tool = nullptr;
  auto tools = req.find("tools");
  if (tools == req.end() || tools->is_null()) return std::nullopt;
  if (!tools->is_array()) return invalid("tools must be an array", "tools", "invalid_type");
  for (size_t i = 0; i < tools->size(); ++i) {
    const json& t = (*tools)[i];
    if (!t.is_object() || !t.contains("type") || !t["type"].is_string())
      return invalid("each tool must be an object with a type", "tools[" + std::to_string(i) + "]", "invalid_type");
    if (t["type"] != "function") continue;
    if (!t.contains("name") || !t["name"].is_string() || t["name"].get_ref<const std::string&>().empty())
      return invalid("Missing required parameter: 'tools[" + std::to_string(i) + "].name'.",
                     "tools[" + std::to_string(i) + "].name", "missing_required_parameter");
    if (!tool) tool = &t;
  }
  return std::nullopt;
}

// Counts the words of a request's input (3 more per item), checking its shape.
std::optional<Reply> count_input(const json& input, int64_t& tokens, bool& ends_with_tool_output) {
  ends_with_tool_output = false;
  if (input.is_string()) {
    tokens += count_words(input.get_ref<const std::string&>());
    return std::nullopt;
  }
  if (!input.is_array() || input.empty())
    return invalid("input must be a string or a non-empty array of input items", "input", "invalid_type");
  for (size_t i = 0; i < input.size(); ++i) {
    const json& item = input[i];
    const std::string at = "input[" + std::to_string(i) + "]";
    if (!item.is_object()) return invalid("each input item must be an object", at, "invalid_type");
    const std::string type = item.value("type", std::string(item.contains("role") ? "message" : ""));
    tokens += 3;
    auto text_of = [&](const char* key) {
      auto it = item.find(key);
      if (it != item.end() && it->is_string()) tokens += count_words(it->get_ref<const std::string&>());
    };
    if (type == "message") {
      if (!item.contains("role") || !item["role"].is_string())
        return invalid("Missing required parameter: '" + at + ".role'.", at + ".role", "missing_required_parameter");
      const json& content = item.value("content", json());
      if (content.is_string()) {
        tokens += count_words(content.get_ref<const std::string&>());
      } else if (content.is_array()) {
        for (const json& part : content)
          if (part.is_object() && part.contains("text") && part["text"].is_string())
            tokens += count_words(part["text"].get_ref<const std::string&>());
      } else {
        return invalid("Missing required parameter: '" + at + ".content'.", at + ".content", "missing_required_parameter");
      }
    } else if (type == "function_call") {
      if (!item.contains("call_id") || !item.contains("name") || !item.contains("arguments"))
        return invalid("a function_call item needs call_id, name and arguments", at, "missing_required_parameter");
      text_of("arguments");
    } else if (type == "function_call_output") {
      if (!item.contains("call_id") || !item.contains("output"))
        return invalid("Missing required parameter: '" + at + ".call_id' or '" + at + ".output'.", at,
                       "missing_required_parameter");
      text_of("output");
    } else if (type != "reasoning" && type != "item_reference") {
      return invalid("Invalid value: '" + type + "'. Supported values are: 'message', 'function_call', "
                     "'function_call_output', 'reasoning' and 'item_reference'.",
                     at + ".type", "invalid_value");
    }
    ends_with_tool_output = type == "function_call_output";
  }
  return std::nullopt;
}

// The arguments a model would write for the tool: a string for each required property.
std::string tool_arguments(const json& tool, const CallContext& ctx) {
  // Sorted keys, as json (not ordered_json) dumps them.
  return json(required_strings(tool.value("parameters", json()), [&] { return sample_text(ctx); })).dump();
}

// A request field echoed in the response, or its default.
ojson echo(const json& req, const char* key, ojson otherwise) {
  auto it = req.find(key);
  return it == req.end() || it->is_null() ? otherwise : ojson(*it);
}

std::string sse(const ojson& event) {
  return "event: " + event["type"].get<std::string>() + "\ndata: " + event.dump() + "\n\n";
}

}  // namespace

Reply responses_create(const json& req, const CallContext& ctx) {
  auto model = req.find("model");
  if (model == req.end() || model->is_null()) return invalid("Missing required parameter: 'model'.", "model");
  if (!model->is_string()) return invalid("model must be a string", "model", "invalid_type");
  auto input = req.find("input");
  if (input == req.end() || input->is_null()) return invalid("Missing required parameter: 'input'.", "input");
  bool stream = false;
  if (auto it = req.find("stream"); it != req.end() && !it->is_null()) {
    if (!it->is_boolean()) return invalid("stream must be a boolean", "stream", "invalid_type");
    stream = it->get<bool>();
  }
  std::optional<int64_t> max_output;
  if (auto it = req.find("max_output_tokens"); it != req.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 16)
      return invalid("Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16.",
                     "max_output_tokens", "integer_below_min_value");
    max_output = it->get<int64_t>();
  }
  const json* tool = nullptr;
  if (auto err = first_function_tool(req, tool)) return std::move(*err);
  int64_t input_tokens = 0;
  bool answered_tool = false;
  if (auto it = req.find("instructions"); it != req.end() && it->is_string())
    input_tokens += count_words(it->get_ref<const std::string&>());
  if (auto err = count_input(*input, input_tokens, answered_tool)) return std::move(*err);

  const std::string n = std::to_string(ctx.id);
  ojson item;
  int64_t output_tokens = 0;
  bool incomplete = false;
  std::string text;  // the message's text, or the call's arguments
  if (tool && !answered_tool) {
    text = tool_arguments(*tool, ctx);
    output_tokens = std::max<int64_t>(1, count_words(text));
    item["id"] = "fc_fake_" + n;
    item["type"] = "function_call";
    item["status"] = "completed";
    item["arguments"] = text;
    item["call_id"] = "call_fake_" + n;
    item["name"] = (*tool)["name"];
  } else {
    std::vector<std::string> words = word_pieces(sample_text(ctx));
    if (max_output && int64_t(words.size()) > *max_output) {
      words.resize(size_t(*max_output));
      incomplete = true;
    }
    for (auto& w : words) text += w;
    output_tokens = int64_t(words.size());
    item["id"] = "msg_fake_" + n;
    item["type"] = "message";
    item["status"] = incomplete ? "incomplete" : "completed";
    item["content"] = ojson::array(
        {{{"type", "output_text"}, {"annotations", ojson::array()}, {"logprobs", ojson::array()}, {"text", text}}});
    item["role"] = "assistant";
  }

  ojson response;
  response["id"] = "resp_fake_" + n;
  response["object"] = "response";
  response["created_at"] = ctx.created;
  response["status"] = incomplete ? "incomplete" : "completed";
  response["background"] = false;
  response["completed_at"] = incomplete ? ojson(nullptr) : ojson(ctx.created);
  response["error"] = nullptr;
  response["incomplete_details"] = incomplete ? ojson{{"reason", "max_output_tokens"}} : ojson(nullptr);
  response["instructions"] = echo(req, "instructions", nullptr);
  response["max_output_tokens"] = echo(req, "max_output_tokens", nullptr);
  response["model"] = *model;
  response["output"] = ojson::array({item});
  response["parallel_tool_calls"] = echo(req, "parallel_tool_calls", true);
  response["previous_response_id"] = echo(req, "previous_response_id", nullptr);
  response["reasoning"] = echo(req, "reasoning", {{"effort", nullptr}, {"summary", nullptr}});
  response["store"] = echo(req, "store", true);
  response["temperature"] = echo(req, "temperature", 1.0);
  response["text"] = echo(req, "text", {{"format", {{"type", "text"}}}});
  response["tool_choice"] = echo(req, "tool_choice", "auto");
  response["tools"] = echo(req, "tools", ojson::array());
  response["top_p"] = echo(req, "top_p", 1.0);
  response["truncation"] = echo(req, "truncation", "disabled");
  response["usage"] = {{"input_tokens", input_tokens},
                       {"input_tokens_details", {{"cached_tokens", 0}}},
                       {"output_tokens", output_tokens},
                       {"output_tokens_details", {{"reasoning_tokens", 0}}},
                       {"total_tokens", input_tokens + output_tokens}};
  response["user"] = echo(req, "user", nullptr);
  response["metadata"] = echo(req, "metadata", ojson::object());

  Reply r;
  r.samples = 1;
  r.prompt_tokens = input_tokens;
  r.completion_tokens = output_tokens;
  r.longest_choice = output_tokens;
  if (!stream) {
    r.body = std::move(response);
    return r;
  }

  // The stream: the response in progress, the item's lifecycle, the whole response.
  r.stream = true;
  int64_t seq = 0;
  auto emit = [&](ojson event) {
    ojson out;
    out["type"] = event["type"];
    out["sequence_number"] = seq++;
    for (auto& [key, value] : event.items())
      if (key != "type") out[key] = value;
    r.events.push_back(sse(out));
  };
  ojson opening = response;
  opening["status"] = "in_progress";
  opening["completed_at"] = nullptr;
  opening["incomplete_details"] = nullptr;
  opening["output"] = ojson::array();
  opening["usage"] = nullptr;
  emit({{"type", "response.created"}, {"response", opening}});
  emit({{"type", "response.in_progress"}, {"response", opening}});
  ojson added = item;
  added["status"] = "in_progress";
  const ojson id = item["id"];
  const std::vector<std::string> pieces = word_pieces(text);
  if (item["type"] == "function_call") {
    added["arguments"] = "";
    emit({{"type", "response.output_item.added"}, {"output_index", 0}, {"item", added}});
    for (auto& piece : pieces)
      emit({{"type", "response.function_call_arguments.delta"}, {"item_id", id}, {"output_index", 0}, {"delta", piece}});
    emit({{"type", "response.function_call_arguments.done"},
          {"item_id", id},
          {"output_index", 0},
          {"name", item["name"]},
          {"arguments", text}});
  } else {
    added["content"] = ojson::array();
    emit({{"type", "response.output_item.added"}, {"output_index", 0}, {"item", added}});
    ojson part = item["content"][0];
    ojson empty_part = part;
    empty_part["text"] = "";
    emit({{"type", "response.content_part.added"},
          {"item_id", id},
          {"output_index", 0},
          {"content_index", 0},
          {"part", empty_part}});
    for (auto& piece : pieces)
      emit({{"type", "response.output_text.delta"},
            {"item_id", id},
            {"output_index", 0},
            {"content_index", 0},
            {"delta", piece},
            {"logprobs", ojson::array()}});
    emit({{"type", "response.output_text.done"},
          {"item_id", id},
          {"output_index", 0},
          {"content_index", 0},
          {"text", text},
          {"logprobs", ojson::array()}});
    emit({{"type", "response.content_part.done"},
          {"item_id", id},
          {"output_index", 0},
          {"content_index", 0},
          {"part", part}});
  }
  emit({{"type", "response.output_item.done"}, {"output_index", 0}, {"item", item}});
  emit({{"type", incomplete ? "response.incomplete" : "response.completed"}, {"response", response}});
  return r;
}

}  // namespace reprise::fake
