// The fake's Gemini API: POST /v1beta/models/{model}:generateContent and
// :streamGenerateContent, answered like the real one: candidateCount candidates of
// fresh text each (or a functionCall when tools declare functions and the last turn is
// no functionResponse), responseId and modelVersion, usageMetadata, Gemini-shaped
// errors ({"error":{"code","message","status"}}), and alt=sse streams of bare
// GenerateContentResponse chunks (no event names, no [DONE]).
#include "dialects.hpp"

namespace reprise::fake {
namespace {

constexpr int64_t kMaxCandidates = 8;

// google.rpc.Code's name for an HTTP status, as Google's APIs report it.
const char* status_name(unsigned status) {
  switch (status) {
    case 400: return "INVALID_ARGUMENT";
    case 401: return "UNAUTHENTICATED";
    case 403: return "PERMISSION_DENIED";
    case 404: return "NOT_FOUND";
    case 429: return "RESOURCE_EXHAUSTED";
    case 503: return "UNAVAILABLE";
    case 504: return "DEADLINE_EXCEEDED";
    default: return "INTERNAL";
  }
}

Reply gemini_error(unsigned status, std::string_view message) {
  Reply r;
  r.status = status;
  ojson& e = r.body["error"];
  e["code"] = status;
  e["message"] = message;
  e["status"] = status_name(status);
  return r;
}

Reply invalid(std::string_view message) { return gemini_error(400, message); }

// Words in the text parts of a Content (or systemInstruction).
int64_t content_words(const json& content) {
  int64_t words = 0;
  const json parts = content.is_object() ? content.value("parts", json()) : json();
  if (parts.is_array())
    for (auto& part : parts)
      if (part.is_object() && part.contains("text") && part["text"].is_string())
        words += count_words(part["text"].get_ref<const std::string&>());
  return words;
}

std::optional<Reply> validate_content(const json& content, const std::string& where, bool system) {
  if (!content.is_object()) return invalid("* GenerateContentRequest." + where + ": must be a Content object");
  if (auto role = content.find("role"); role != content.end() && !system) {
    if (!role->is_string() || (role->get<std::string>() != "user" && role->get<std::string>() != "model"))
      return invalid("* GenerateContentRequest." + where + ".role: Please use a valid role: user, model.");
  }
  auto parts = content.find("parts");
  if (parts == content.end() || !parts->is_array() || parts->empty())
    return invalid("* GenerateContentRequest." + where + ".parts: contents.parts must not be empty.");
  for (auto& part : *parts)
    if (!part.is_object() || part.empty())
      return invalid("* GenerateContentRequest." + where + ".parts: a part must have one data field.");
  return std::nullopt;
}

// The function a call is made to: the first declaration of the first tool that has
// any, or null when there is none.
json first_declaration(const json& req) {
  const json tools = req.value("tools", json());
  if (!tools.is_array()) return nullptr;
  for (auto& tool : tools) {
    const json declarations = tool.is_object() ? tool.value("functionDeclarations", json()) : json();
    if (declarations.is_array() && !declarations.empty() && declarations[0].is_object()) return declarations[0];
  }
  return nullptr;
}

bool answers_a_call(const json& contents) {
  const json parts = contents.back().value("parts", json::array());
  for (auto& part : parts)
    if (part.is_object() && part.contains("functionResponse")) return true;
  return false;
}

// {name, args: a string per required parameter} (the text makes it fresh per call).
ojson function_call(const json& declaration, const std::string& text) {
  ojson call;
  call["name"] = declaration.value("name", "function");
  const json params = declaration.contains("parameters") ? declaration["parameters"]
                                                         : declaration.value("parametersJsonSchema", json());
  call["args"] = required_strings(params, [&] { return text; });
  return call;
}

struct Candidate {
  SampledText text;
  ojson call;  // null unless it calls a function
  std::string finish;
  int64_t tokens = 0;
};

}  // namespace

Reply gemini_generate(const json& req, std::string_view model, bool stream, const CallContext& ctx) {
  auto contents = req.find("contents");
  if (contents == req.end()) return invalid("* GenerateContentRequest.contents: contents is not specified\n");
  if (!contents->is_array() || contents->empty())
    return invalid("* GenerateContentRequest.contents: contents must be a non-empty list\n");
  int64_t prompt_tokens = 0;
  for (size_t i = 0; i < contents->size(); ++i) {
    if (auto err = validate_content((*contents)[i], "contents[" + std::to_string(i) + "]", false)) return *err;
    prompt_tokens += content_words((*contents)[i]);
  }
  if (auto system = req.find("systemInstruction"); system != req.end()) {
    if (auto err = validate_content(*system, "system_instruction", true)) return *err;
    prompt_tokens += content_words(*system);
  }
  if (req.contains("model")) return invalid("the fake refuses a body \"model\": the path names the model (a proxy must not send one)");

  int64_t count = 1;
  std::optional<int64_t> max_tokens;
  if (auto config = req.find("generationConfig"); config != req.end()) {
    if (!config->is_object()) return invalid("Invalid value at 'generation_config': expected an object");
    if (auto c = config->find("candidateCount"); c != config->end()) {
      if (!c->is_number_integer() || c->get<int64_t>() < 1 || c->get<int64_t>() > kMaxCandidates)
        return invalid("* GenerateContentRequest.generation_config.candidate_count: must be in [1, 8]");
      count = c->get<int64_t>();
    }
    if (auto m = config->find("maxOutputTokens"); m != config->end()) {
      if (!m->is_number_integer() || m->get<int64_t>() < 1)
        return invalid("* GenerateContentRequest.generation_config.max_output_tokens: must be positive");
      max_tokens = m->get<int64_t>();
    }
    if (auto t = config->find("temperature"); t != config->end() &&
                                              (!t->is_number() || t->get<double>() < 0 || t->get<double>() > 2))
      return invalid("* GenerateContentRequest.generation_config.temperature: must be in [0.0, 2.0]");
  }

  const json declaration = first_declaration(req);
  const bool calls = declaration.is_object() && !answers_a_call(*contents);
  std::vector<Candidate> candidates;
  int64_t completion_tokens = 0;
  for (int64_t i = 0; i < count; ++i) {
    Candidate c;
    c.text = sample_text(ctx, calls ? std::nullopt : max_tokens);
    if (calls) {
      c.call = function_call(declaration, c.text.text);
      c.tokens = int64_t(c.text.pieces.size()) + 1 + int64_t(c.call["args"].size());
    } else {
      c.tokens = int64_t(c.text.pieces.size());
    }
    c.finish = c.text.truncated ? "MAX_TOKENS" : "STOP";
    if (ctx.finish_reason && (ctx.finish_reason_choice < 0 || ctx.finish_reason_choice == i)) c.finish = *ctx.finish_reason;
    completion_tokens += c.tokens;
    candidates.push_back(std::move(c));
  }

  Reply r;
  r.samples = uint64_t(count);
  r.prompt_tokens = prompt_tokens;
  r.completion_tokens = completion_tokens;
  for (auto& c : candidates) r.longest_choice = std::max(r.longest_choice, c.tokens);
  ojson usage;
  usage["promptTokenCount"] = prompt_tokens;
  usage["candidatesTokenCount"] = completion_tokens;
  usage["totalTokenCount"] = prompt_tokens + completion_tokens;
  usage["promptTokensDetails"] = ojson::array({{{"modality", "TEXT"}, {"tokenCount", prompt_tokens}}});
  const std::string response_id = "fakeResp" + std::to_string(ctx.id) + "x" + std::to_string(ctx.sampler.draw() % 1000000);

  if (!stream) {
    ojson& list = r.body["candidates"] = ojson::array();
    for (size_t i = 0; i < candidates.size(); ++i) {
      // A call comes after a sentence that introduces it, as the models often write one.
      ojson parts = ojson::array({{{"text", candidates[i].text.text}}});
      if (!candidates[i].call.is_null()) parts.push_back({{"functionCall", candidates[i].call}});
      ojson candidate;
      candidate["content"] = {{"parts", std::move(parts)}, {"role", "model"}};
      candidate["finishReason"] = candidates[i].finish;
      candidate["index"] = i;
      list.push_back(std::move(candidate));
    }
    r.body["usageMetadata"] = usage;
    r.body["modelVersion"] = model;
    r.body["responseId"] = response_id;
    return r;
  }

  // A chunk per piece, the candidates taking turns; index 0 left out, as proto3 does.
  r.stream = true;
  auto emit = [&](size_t i, ojson part, const std::string* finish, bool last) {
    ojson candidate;
    candidate["content"] = {{"parts", ojson::array({std::move(part)})}, {"role", "model"}};
    if (finish) candidate["finishReason"] = *finish;
    if (i) candidate["index"] = i;
    ojson chunk;
    chunk["candidates"] = ojson::array({std::move(candidate)});
    // Each chunk reports the prompt; the last one the whole usage.
    chunk["usageMetadata"] = last ? usage : ojson{{"promptTokenCount", prompt_tokens}, {"totalTokenCount", prompt_tokens}};
    chunk["modelVersion"] = model;
    chunk["responseId"] = response_id;
    r.events.push_back("data: " + chunk.dump() + "\r\n\r\n");
    r.paced.push_back(false);
  };
  std::vector<size_t> sent(candidates.size(), 0);
  size_t left = candidates.size();
  for (size_t round = 0; left > 0; ++round)
    for (size_t i = 0; i < candidates.size(); ++i) {
      Candidate& c = candidates[i];
      const size_t words = std::max<size_t>(1, c.text.pieces.size());
      const size_t total = words + (c.call.is_null() ? 0 : 1);  // the call whole, after the text
      if (sent[i] >= total) continue;
      const bool ends = ++sent[i] == total;
      ojson part;
      if (sent[i] > words) part["functionCall"] = c.call;
      else part["text"] = c.text.pieces.empty() ? std::string() : c.text.pieces[sent[i] - 1];
      if (ends) --left;
      emit(i, std::move(part), ends ? &c.finish : nullptr, ends && left == 0);
    }
  return r;
}

Reply as_gemini_error(Reply r) {
  if (r.status / 100 == 2) return r;
  const ojson error = r.body.value("error", ojson());
  if (error.is_object() && error.value("status", ojson()).is_string()) return r;  // already Gemini's
  const std::string message = error.is_object() && error.value("message", ojson()).is_string()
                                  ? error["message"].get<std::string>()
                                  : std::string("error");
  return gemini_error(r.status, message);
}

}  // namespace reprise::fake
