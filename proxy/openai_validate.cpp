#include "proxy/openai_validate.hpp"

#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <string_view>

namespace reprise {
namespace {

using nlohmann::json;

constexpr double kNone = std::numeric_limits<double>::infinity();  // no bound

enum class Kind {
  boolean,
  integer,           // an integral JSON number (2.0 too: canonicalisation makes it 2)
  number,
  string,
  nonempty_string,
  object,
  strings,           // an array of strings
  objects,           // an array of objects
  string_or_object,  // tool_choice, function_call: "auto" or {"type": ...}
  stream_options,    // an object; include_usage a boolean
  encoding_format,   // "float" or "base64"
  stop,              // a string, or an array of up to 4 strings
  logit_bias,        // an object of numbers from -100 to 100
  messages,          // a non-empty array of {role, content}
  prompt,            // a string, or an array of strings, of tokens or of token arrays
  input,             // the same, none empty, at most 2,048 items
};

struct Field {
  std::string_view name;
  Kind kind;
  bool required = false;
  double min = -kNone;  // for integer and number
  double max = kNone;
};

// Every endpoint: what canonicalisation reads itself, in its order, so that a request
// with several faults names the same one on the cached and the relayed path.
constexpr Field kCommon[] = {
    {.name = "n", .kind = Kind::integer, .min = 1, .max = 128},
    {.name = "stream", .kind = Kind::boolean},
    {.name = "stream_options", .kind = Kind::stream_options},
    {.name = "user", .kind = Kind::string},
    {.name = "model", .kind = Kind::nonempty_string, .required = true},
};

// https://platform.openai.com/docs/api-reference/chat/create
constexpr Field kChat[] = {
    {.name = "messages", .kind = Kind::messages, .required = true},
    {.name = "temperature", .kind = Kind::number, .min = 0, .max = 2},
    {.name = "top_p", .kind = Kind::number, .min = 0, .max = 1},
    {.name = "max_tokens", .kind = Kind::integer, .min = 1},
    {.name = "max_completion_tokens", .kind = Kind::integer, .min = 1},
    {.name = "stop", .kind = Kind::stop},
    {.name = "seed", .kind = Kind::integer},
    {.name = "presence_penalty", .kind = Kind::number, .min = -2, .max = 2},
    {.name = "frequency_penalty", .kind = Kind::number, .min = -2, .max = 2},
    {.name = "logit_bias", .kind = Kind::logit_bias},
    {.name = "logprobs", .kind = Kind::boolean},
    {.name = "top_logprobs", .kind = Kind::integer, .min = 0, .max = 20},
    {.name = "tools", .kind = Kind::objects},
    {.name = "tool_choice", .kind = Kind::string_or_object},
    {.name = "parallel_tool_calls", .kind = Kind::boolean},
    {.name = "functions", .kind = Kind::objects},
    {.name = "function_call", .kind = Kind::string_or_object},
    {.name = "response_format", .kind = Kind::object},
    {.name = "reasoning_effort", .kind = Kind::string},
    {.name = "service_tier", .kind = Kind::string},
    {.name = "modalities", .kind = Kind::strings},
    {.name = "audio", .kind = Kind::object},
    {.name = "prediction", .kind = Kind::object},
    {.name = "web_search_options", .kind = Kind::object},
    {.name = "metadata", .kind = Kind::object},
    {.name = "store", .kind = Kind::boolean},
};

// https://platform.openai.com/docs/api-reference/completions/create
constexpr Field kCompletions[] = {
    {.name = "prompt", .kind = Kind::prompt, .required = true},
    {.name = "temperature", .kind = Kind::number, .min = 0, .max = 2},
    {.name = "top_p", .kind = Kind::number, .min = 0, .max = 1},
    {.name = "max_tokens", .kind = Kind::integer, .min = 0},  // 0 with echo: the prompt's logprobs
    {.name = "stop", .kind = Kind::stop},
    {.name = "seed", .kind = Kind::integer},
    {.name = "presence_penalty", .kind = Kind::number, .min = -2, .max = 2},
    {.name = "frequency_penalty", .kind = Kind::number, .min = -2, .max = 2},
    {.name = "logit_bias", .kind = Kind::logit_bias},
    {.name = "logprobs", .kind = Kind::integer, .min = 0, .max = 5},
    {.name = "echo", .kind = Kind::boolean},
    {.name = "best_of", .kind = Kind::integer, .min = 0, .max = 20},
    {.name = "suffix", .kind = Kind::string},
};

// https://platform.openai.com/docs/api-reference/embeddings/create
constexpr Field kEmbeddings[] = {
    {.name = "input", .kind = Kind::input, .required = true},
    {.name = "encoding_format", .kind = Kind::encoding_format},
    {.name = "dimensions", .kind = Kind::integer, .min = 1},
};

// --- Messages in the API's words ------------------------------------------------------

std::string type_of(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "something else";
  }
}

std::string bound(double value) {
  return std::trunc(value) == value ? std::to_string(static_cast<long long>(value)) : json(value).dump();
}

// "an integer from 1 to 128", "a number from -2 to 2", "an integer of at least 1".
std::string expected_number(const char* what, const Field& field) {
  std::string text = what;
  if (field.min != -kNone && field.max != kNone) return text + " from " + bound(field.min) + " to " + bound(field.max);
  if (field.min != -kNone) return text + " of at least " + bound(field.min);
  return text;
}

// The field's name is made a string only here, on a fault: a valid request (every cache
// hit checks one) allocates nothing.
Error wrong_type(std::string_view param, const std::string& expected, const json& got) {
  const std::string name(param);
  return Error{ErrorKind::bad_request,
               "Invalid type for '" + name + "': expected " + expected + ", but got " + type_of(got) + " instead.", name};
}

Error wrong_value(std::string_view param, const std::string& expected, const std::string& got) {
  const std::string name(param);
  return Error{ErrorKind::bad_request, "Invalid value for '" + name + "': expected " + expected + ", but got " + got + " instead.",
               name};
}

Error missing(std::string_view param) {
  const std::string name(param);
  return Error{ErrorKind::bad_request, "Missing required parameter: '" + name + "'.", name};
}

// A value quoted in a message: short, so that a huge field is not echoed back whole.
std::string shown(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  return text.size() <= 64 ? text : text.substr(0, 61) + "...";
}

// --- The kinds ------------------------------------------------------------------------

bool is_integer(const json& value) {
  if (value.is_number_integer()) return true;
  return value.is_number_float() && std::trunc(value.get<double>()) == value.get<double>();
}

bool all_of(const json& array, bool (*pred)(const json&)) {
  for (const auto& item : array)
    if (!pred(item)) return false;
  return true;
}

bool is_string(const json& v) { return v.is_string(); }
bool is_object(const json& v) { return v.is_object(); }
bool is_nonempty_string(const json& v) { return v.is_string() && !v.get_ref<const std::string&>().empty(); }
bool is_tokens(const json& v) { return v.is_array() && all_of(v, is_integer); }
bool is_nonempty_tokens(const json& v) { return is_tokens(v) && !v.empty(); }

std::optional<Error> check_range(const Field& field, const char* what, const json& value) {
  const double x = value.get<double>();
  if (x < field.min || x > field.max) return wrong_value(field.name, expected_number(what, field), shown(value));
  return std::nullopt;
}

std::optional<Error> check_messages(const json& value) {
  static constexpr std::string_view kRoles[] = {"system", "developer", "user", "assistant", "tool", "function"};
  if (!value.is_array()) return wrong_type("messages", "a non-empty array of messages", value);
  if (value.empty()) return wrong_value("messages", "a non-empty array of messages", "an empty array");
  for (size_t i = 0; i < value.size(); ++i) {
    auto at = [i](const char* part) { return "messages[" + std::to_string(i) + "]" + part; };
    const json& message = value[i];
    if (!message.is_object()) return wrong_type(at(""), "an object", message);
    auto role = message.find("role");
    if (role == message.end() || role->is_null()) return missing(at(".role"));
    if (!role->is_string()) return wrong_type(at(".role"), "a string", *role);
    bool known = false;
    for (auto name : kRoles) known = known || role->get_ref<const std::string&>() == name;
    if (!known)
      return wrong_value(at(".role"), "one of system, developer, user, assistant, tool or function", shown(*role));
    auto content = message.find("content");
    if (content != message.end() && !content->is_null() && !content->is_string() && !content->is_array())
      return wrong_type(at(".content"), "a string or an array of content parts", *content);
  }
  return std::nullopt;
}

// A prompt or an embedding's input: one text or several, as strings or token ids.
std::optional<Error> check_texts(const Field& field, const json& value) {
  const std::string_view name = field.name;
  const bool input = field.kind == Kind::input;
  const char* expected = input ? "a non-empty string, or a non-empty array of strings, of token ids or of token arrays"
                               : "a string, or an array of strings, of token ids or of token arrays";
  if (value.is_string()) {
    if (input && value.get_ref<const std::string&>().empty()) return wrong_value(name, expected, "an empty string");
    return std::nullopt;
  }
  if (!value.is_array()) return wrong_type(name, expected, value);
  if (input && value.empty()) return wrong_value(name, expected, "an empty array");
  if (input && value.size() > 2048)
    return wrong_value(name, "at most 2048 items", "an array of " + std::to_string(value.size()));
  const bool texts = input ? all_of(value, is_nonempty_string) : all_of(value, is_string);
  const bool token_lists = input ? all_of(value, is_nonempty_tokens) : all_of(value, is_tokens);
  if (texts || all_of(value, is_integer) || token_lists) return std::nullopt;
  return wrong_value(name, expected, "an array of other items");
}

std::optional<Error> check(const Field& field, const json& value) {
  const std::string_view name = field.name;
  switch (field.kind) {
    case Kind::boolean:
      if (!value.is_boolean()) return wrong_type(name, "a boolean", value);
      return std::nullopt;
    case Kind::integer:
      if (!is_integer(value)) return wrong_type(name, expected_number("an integer", field), value);
      return check_range(field, "an integer", value);
    case Kind::number:
      if (!value.is_number()) return wrong_type(name, expected_number("a number", field), value);
      return check_range(field, "a number", value);
    case Kind::string:
      if (!value.is_string()) return wrong_type(name, "a string", value);
      return std::nullopt;
    case Kind::nonempty_string:
      if (!value.is_string()) return wrong_type(name, "a non-empty string", value);
      if (value.get_ref<const std::string&>().empty()) return wrong_value(name, "a non-empty string", "an empty string");
      return std::nullopt;
    case Kind::object:
      if (!value.is_object()) return wrong_type(name, "an object", value);
      return std::nullopt;
    case Kind::strings:
      if (!value.is_array() || !all_of(value, is_string)) return wrong_type(name, "an array of strings", value);
      return std::nullopt;
    case Kind::objects:
      if (!value.is_array() || !all_of(value, is_object)) return wrong_type(name, "an array of objects", value);
      return std::nullopt;
    case Kind::string_or_object:
      if (!value.is_string() && !value.is_object()) return wrong_type(name, "a string or an object", value);
      return std::nullopt;
    case Kind::stream_options: {
      if (!value.is_object()) return wrong_type(name, "an object", value);
      auto usage = value.find("include_usage");
      if (usage != value.end() && !usage->is_null() && !usage->is_boolean())
        return wrong_type(std::string(name) + ".include_usage", "a boolean", *usage);
      return std::nullopt;
    }
    case Kind::encoding_format:
      if (value != "float" && value != "base64") return wrong_value(name, "\"float\" or \"base64\"", shown(value));
      return std::nullopt;
    case Kind::stop:
      if (value.is_string()) return std::nullopt;
      if (!value.is_array() || !all_of(value, is_string)) return wrong_type(name, "a string or an array of strings", value);
      if (value.size() > 4) return wrong_value(name, "at most 4 stop sequences", std::to_string(value.size()));
      return std::nullopt;
    case Kind::logit_bias:
      if (!value.is_object()) return wrong_type(name, "an object of token ids to numbers", value);
      for (const auto& bias : value)
        if (!bias.is_number() || bias.get<double>() < -100 || bias.get<double>() > 100)
          return wrong_value(name, "biases that are numbers from -100 to 100", shown(bias));
      return std::nullopt;
    case Kind::messages: return check_messages(value);
    case Kind::prompt:
    case Kind::input: return check_texts(field, value);
  }
  return std::nullopt;
}

std::optional<Error> check_all(std::span<const Field> fields, const json& body) {
  for (const auto& field : fields) {
    auto it = body.find(field.name);
    if (it == body.end() || it->is_null()) {
      if (field.required) return missing(field.name);
      continue;
    }
    if (auto error = check(field, *it)) return error;
  }
  return std::nullopt;
}

}  // namespace

std::optional<Error> validate_request(Endpoint endpoint, const json& body) {
  std::span<const Field> table;
  switch (endpoint) {
    case Endpoint::chat_completions: table = kChat; break;
    case Endpoint::completions: table = kCompletions; break;
    case Endpoint::embeddings: table = kEmbeddings; break;
    default: return std::nullopt;
  }
  if (!body.is_object()) return Error{ErrorKind::invalid_json, "the request body must be a JSON object", {}};
  if (auto error = check_all(kCommon, body)) return error;
  return check_all(table, body);
}

}  // namespace reprise
