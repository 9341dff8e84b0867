#include "app.hpp"

#include "dialects.hpp"

#include <cctype>
#include <ctime>
#include <exception>

namespace reprise::fake {

namespace {

// Dumps JSON; invalid UTF-8 (possible only in echoed raw bodies) is replaced, not thrown.
std::string to_text(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

Response text_response(unsigned version, bool keep_alive, unsigned status, std::string body) {
  Response res{http::status::ok, version};
  res.result(status);
  res.set(http::field::server, "fake_openai");
  res.set(http::field::content_type, "application/json");
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

// An outcome that is just a response: no stream, no delays.
Outcome whole(Response res) {
  Outcome out;
  out.res = std::move(res);
  return out;
}

Reply not_found(http::verb method, std::string_view path) {
  return error_reply(404, "invalid_request_error",
                     "Invalid URL (" + std::string(http::to_string(method)) + " " + std::string(path) + ")");
}

Reply wrong_method(std::string_view allow, std::string_view path) {
  return error_reply(405, "invalid_request_error",
                     "Method not allowed: use " + std::string(allow) + " for " + std::string(path) + ".");
}

Reply injected_failure(int64_t status) {
  if (status == 429)
    return error_reply(429, "rate_limit_error", "Rate limit reached (injected by fake_openai).", {},
                       "rate_limit_exceeded");
  if (status >= 500)
    return error_reply(unsigned(status), "server_error",
                       "The server had an error while processing your request (injected by fake_openai).");
  return error_reply(unsigned(status), "invalid_request_error", "Injected failure (fake_openai).");
}

}  // namespace

Response json_response(unsigned version, bool keep_alive, unsigned status, const ojson& body) {
  return text_response(version, keep_alive, status, to_text(body));
}

Outcome App::handle(Request& req) {
  try {
    std::string_view target = req.target();
    std::string_view path = target.substr(0, target.find('?'));
    if (path == "/v1" || path.starts_with("/v1/") || path.starts_with("/v1beta/")) return handle_v1(req, path);
    if (path.starts_with("/_fake/")) return handle_fake(req, path);
    return whole(json_response(req.version(), req.keep_alive(), 404, not_found(req.method(), path).body));
  } catch (const std::exception& e) {  // a bug, not bad input: answer it, keep serving
    return whole(json_response(req.version(), false, 500, error_reply(500, "server_error", e.what()).body));
  }
}

Outcome App::handle_v1(Request& req, std::string_view path) {
  const json body = json::parse(req.body(), nullptr, false);  // discarded when not JSON
  RequestRecord rec{std::string(req.method_string()), std::string(req.target()), {}, std::move(req.body())};
  for (const auto& field : req) {
    std::string name(field.name_string());
    for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    rec.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  auto [id, knobs] = state.begin_call(path, std::move(rec));

  // Authentication first, then injected failures, then the endpoint itself.
  const char* allow = nullptr;
  bool injected = false;
  Reply r;
  // Each dialect's own credential: Authorization (OpenAI), x-api-key (Anthropic),
  // x-goog-api-key or ?key= (Gemini).
  auto authorized = [&] {
    if (auth_.empty() || req[http::field::authorization] == auth_) return true;
    const std::string_view key = std::string_view(auth_).substr(7);  // after "Bearer "
    if (req["x-api-key"] == key || req["x-goog-api-key"] == key) return true;
    std::string_view target = req.target();
    return target.find("?key=" + std::string(key)) != std::string_view::npos ||
           target.find("&key=" + std::string(key)) != std::string_view::npos;
  };
  if (!authorized())
    r = error_reply(401, "invalid_request_error", "Incorrect API key provided.", {}, "invalid_api_key");
  else if ((injected = state.take_failure()))
    r = injected_failure(knobs.fail_status);
  else
    r = route_v1(req.method(), path, body, id, knobs, allow);
  if (path.starts_with("/v1/messages")) r = as_anthropic_error(std::move(r));
  if (path.starts_with("/v1beta/")) r = as_gemini_error(std::move(r));
  if (r.status == 200) {
    state.samples += r.samples;
    state.prompt_tokens += uint64_t(r.prompt_tokens);
    state.completion_tokens += uint64_t(r.completion_tokens);
    for (size_t k = 0; k < r.kinds.size(); ++k) state.calls_by_kind[k] += r.kinds[k];
  }
  // The simulated model takes time to write, like a real one.
  const bool simulated = knobs.simulate_game24 && r.status == 200 && !injected &&
                         (path == "/v1/chat/completions" || path == "/v1/completions");

  Outcome out;
  out.v1 = true;
  out.knobs = knobs;
  if (r.stream) {
    out.stream = true;
    out.events = knobs.malformed ? malformed_events() : std::move(r.events);
    if (simulated) {
      out.first_token_ms = knobs.sim_first_token_ms;
      out.token_ms = knobs.sim_ms_per_token;
      if (!knobs.malformed) out.paced = std::move(r.paced);
    }
    out.res = Response{http::status::ok, req.version()};
    out.res.set(http::field::server, "fake_openai");
    out.res.set(http::field::content_type, "text/event-stream");
    out.res.set(http::field::cache_control, "no-cache");
    out.res.keep_alive(req.keep_alive());
    out.res.chunked(true);
  } else {
    if (simulated) out.generation_ms = knobs.sim_first_token_ms + knobs.sim_ms_per_token * r.longest_choice;
    std::string text = to_text(r.body);
    if (knobs.malformed && r.status == 200) text.resize(text.size() / 2);
    out.res = text_response(req.version(), req.keep_alive(), r.status, std::move(text));
  }
  out.res.set("x-request-id", "req_fake_" + std::to_string(id));
  if (allow) out.res.set(http::field::allow, allow);
  if (injected && knobs.retry_after) out.res.set(http::field::retry_after, *knobs.retry_after);
  if (injected && knobs.retry_after_ms) out.res.set("retry-after-ms", std::to_string(*knobs.retry_after_ms));
  return out;
}

Reply App::route_v1(http::verb method, std::string_view path, const json& body, uint64_t id,
                    const Settings& knobs, const char*& allow) {
  auto wrong = [&](const char* m) {
    allow = m;
    return wrong_method(m, path);
  };
  if (path == "/v1/models") return method == http::verb::get ? list_models() : wrong("GET");
  if (path.starts_with("/v1/models/") && path.size() > 11)
    return method == http::verb::get ? get_model(path.substr(11)) : wrong("GET");

  // Gemini: /v1beta/models/{model}:generateContent | :streamGenerateContent.
  std::string_view gemini_model;
  bool gemini_stream = false;
  if (path.starts_with("/v1beta/models/")) {
    std::string_view rest = path.substr(15);
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return not_found(method, path);
    std::string_view verb = rest.substr(colon + 1);
    if (verb != "generateContent" && verb != "streamGenerateContent") return not_found(method, path);
    gemini_model = rest.substr(0, colon);
    gemini_stream = verb == "streamGenerateContent";
  } else if (path != "/v1/chat/completions" && path != "/v1/completions" && path != "/v1/embeddings" &&
             path != "/v1/responses" && path != "/v1/messages" && path != "/v1/messages/count_tokens") {
    return not_found(method, path);
  }
  if (method != http::verb::post) return wrong("POST");
  if (body.is_discarded() || !body.is_object())
    return error_reply(400, "invalid_request_error",
                       "We could not parse the JSON body of your request: expected a JSON object.");
  CallContext ctx{id,          int64_t(std::time(nullptr)), knobs.min_words,    knobs.max_words,
                  sampler_,    knobs.simulate_game24,       knobs.rich,         knobs.tool_calls,
                  knobs.finish_reason, knobs.finish_reason_choice};
  if (!gemini_model.empty()) return gemini_generate(body, gemini_model, gemini_stream, ctx);
  if (path == "/v1/responses") return responses_create(body, ctx);
  if (path == "/v1/messages") return anthropic_messages(body, ctx);
  if (path == "/v1/messages/count_tokens") return anthropic_count_tokens(body);
  if (path == "/v1/chat/completions") return chat_completions(body, ctx);
  if (path == "/v1/completions") return completions(body, ctx);
  return embeddings(body);
}

Outcome App::handle_fake(const Request& req, std::string_view path) {
  auto respond = [&](unsigned status, const ojson& body, const char* allow = nullptr) {
    Outcome out = whole(json_response(req.version(), req.keep_alive(), status, body));
    if (allow) out.res.set(http::field::allow, allow);
    return out;
  };
  auto wrong = [&](const char* m) { return respond(405, wrong_method(m, path).body, m); };

  if (path == "/_fake/control") {
    if (req.method() != http::verb::post) return wrong("POST");
    json patch = json::parse(req.body(), nullptr, false);
    if (patch.is_discarded() || !patch.is_object())
      return respond(400, error_reply(400, "invalid_request_error", "the control body must be a JSON object").body);
    if (auto err = state.control(patch))
      return respond(400, error_reply(400, "invalid_request_error", err->message, err->param).body);
    return respond(200, to_json(state.settings()));
  }
  if (path == "/_fake/reset") {
    if (req.method() != http::verb::post) return wrong("POST");
    state.reset();
    return respond(200, to_json(state.settings()));
  }
  if (path == "/_fake/stats") {
    if (req.method() != http::verb::get) return wrong("GET");
    return respond(200, state.stats());
  }
  return respond(404, not_found(req.method(), path).body);
}

}  // namespace reprise::fake
