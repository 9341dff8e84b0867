#include "proxy/upstream_backend.hpp"

#include <chrono>
#include <optional>

#include "proxy/log.hpp"
#include "proxy/openai_api.hpp"
#include "proxy/openai_format.hpp"

namespace reprise {
namespace {

using nlohmann::json;
using cache::GenerationError;
using cache::Sample;

// Bound on an unfinished SSE event: a server that never ends an event must not
// grow the proxy's memory without limit.
constexpr size_t kMaxSseEventBytes = 8u << 20;

GenerationError bad_response(const std::string& upstream, const std::string& what) {
  Error error{ErrorKind::upstream_bad_response, "upstream \"" + upstream + "\" " + what, {}};
  return to_generation_error(error);
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint32_t count_field(const json& usage, const char* name, bool& present) {
  present = false;
  if (!usage.is_object()) return 0;
  auto it = usage.find(name);
  if (it == usage.end() || !it->is_number_unsigned()) return 0;
  present = true;
  return it->get<uint32_t>();
}

std::string string_field(const json& object, const char* name) {
  if (!object.is_object()) return {};
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
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
Expected<std::vector<Sample>, std::string> samples_from_completion(cache::Endpoint endpoint, const json& body,
                                                                   uint32_t size, std::string_view backend) {
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

}  // namespace

void LiveHead::set(nlohmann::json extra) {
  std::lock_guard lock(mu_);
  extra_ = std::move(extra);
}

nlohmann::json LiveHead::get() const {
  std::lock_guard lock(mu_);
  return extra_;
}

nlohmann::json live_response_extra(const cache::Generation& gen) {
  auto* context = dynamic_cast<const UpstreamCallContext*>(gen.context());
  return context && context->live_head ? context->live_head->get() : nlohmann::json();
}

std::string_view upstream_path(cache::Endpoint endpoint) {
  switch (endpoint) {
    case cache::Endpoint::chat_completions: return "/chat/completions";
    case cache::Endpoint::completions: return "/completions";
    case cache::Endpoint::embeddings: return "/embeddings";
  }
  return "/chat/completions";
}

UpstreamBackend::UpstreamBackend(asio::any_io_executor executor, UpstreamClient& client)
    : executor_(std::move(executor)), client_(client) {}

void UpstreamBackend::generate(std::shared_ptr<cache::Generation> gen) {
  // Its own coroutine: the generation outlives any one client waiting on it. No
  // canceller (generation.hpp): when every client leaves, the call runs on and its
  // samples are stored all the same; it is paid for once sent, and a later request
  // (or a replay) finds them.
  asio::co_spawn(executor_, run(std::move(gen)), asio::detached);
}

awaitable<void> UpstreamBackend::run(std::shared_ptr<cache::Generation> gen) {
  const std::string& upstream = client_.config().name;
  const bool embeddings = gen->endpoint() == cache::Endpoint::embeddings;
  const bool stream = gen->stream() && !embeddings;

  UpstreamRequest request;
  request.method = http::verb::post;
  request.target = std::string(upstream_path(gen->endpoint()));
  if (auto* context = dynamic_cast<const UpstreamCallContext*>(gen->context())) {
    request.headers = context->headers;
    if (!context->query.empty()) request.target += "?" + context->query;
  }
  request.headers.set(http::field::content_type, "application/json");
  request.body = cache::upstream_body(gen->request(), static_cast<int>(gen->size()), stream)
                     .dump(-1, ' ', false, json::error_handler_t::replace);

  auto sent = co_await client_.send(request);
  if (!sent) {
    log::warn(sent.error().message);
    gen->fail(to_generation_error(sent.error()));
    co_return;
  }
  UpstreamResponse& response = *sent.value();
  const unsigned status = response.status();
  auto encoding = response.headers()[http::field::content_encoding];
  if (!encoding.empty() && !beast::iequals(encoding, "identity")) {
    gen->fail(bad_response(upstream, "answered with Content-Encoding " + std::string(encoding)));
    co_return;
  }

  if (status / 100 != 2) {
    // The head first: reading the body to its end hands the connection back.
    GenerationError error{status, {}, {}};
    for (auto& field : relay_headers(response.headers()))
      if (field.name() != http::field::content_type)
        error.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    auto body = co_await response.read_all(client_.config().max_response_bytes);
    if (!body) {
      gen->fail(to_generation_error(body.error()));
      co_return;
    }
    error.body = upstream_error_body(status, body.value(), upstream);
    gen->fail(std::move(error));
    co_return;
  }

  if (!response.is_event_stream()) {
    auto body = co_await response.read_all(client_.config().max_response_bytes);
    if (!body) {
      log::warn(body.error().message);
      gen->fail(to_generation_error(body.error()));
      co_return;
    }
    json parsed = json::parse(body.value(), nullptr, false);
    if (!parsed.is_object()) {
      gen->fail(bad_response(upstream, "returned malformed JSON"));
      co_return;
    }
    auto samples = embeddings ? samples_from_embeddings(parsed, upstream)
                              : samples_from_completion(gen->endpoint(), parsed, gen->size(), upstream);
    if (!samples) {
      log::warn("upstream \"" + upstream + "\" " + samples.error() + ": not cached");
      gen->fail(bad_response(upstream, samples.error()));
      co_return;
    }
    gen->set_identity(string_field(parsed, "model"), string_field(parsed, "system_fingerprint"));
    gen->complete(std::move(samples.value()));
    co_return;
  }

  // A stream: every choice's pieces go to the waiting clients as they arrive, and are
  // accumulated into the samples stored once the stream reached [DONE].
  format::SseParser parser;
  auto* context = dynamic_cast<const UpstreamCallContext*>(gen->context());
  LiveHead* live = context ? context->live_head.get() : nullptr;
  std::vector<format::ChoiceAccumulator> choices(gen->size(), format::ChoiceAccumulator(gen->endpoint()));
  std::vector<std::string> events;
  json head;
  json usage;
  json response_extra;  // the chunks' own fields (service_tier, ...), the first value of each
  bool done = false;
  for (;;) {
    auto piece = co_await response.read_some();
    if (!piece) {
      log::warn(piece.error().message);
      gen->fail(to_generation_error(piece.error()));
      co_return;
    }
    if (!*piece) break;
    events.clear();
    parser.feed(**piece, events);
    if (parser.buffered() > kMaxSseEventBytes) {
      gen->fail(bad_response(upstream, "sent an SSE event over 8 MiB"));
      co_return;
    }
    for (auto& data : events) {
      if (data == "[DONE]") {
        done = true;
        continue;
      }
      json chunk = json::parse(data, nullptr, false);
      if (!chunk.is_object()) {
        gen->fail(bad_response(upstream, "sent an SSE event that is not a JSON object"));
        co_return;
      }
      if (chunk.contains("error")) {  // an error reported inside the stream
        gen->fail({502, chunk.dump(-1, ' ', false, json::error_handler_t::replace), {}});
        co_return;
      }
      if (head.is_null()) {
        head = {{"model", chunk.value("model", json())}, {"system_fingerprint", chunk.value("system_fingerprint", json())}};
        gen->set_identity(string_field(head, "model"), string_field(head, "system_fingerprint"));
        // Before the first piece is published: the live relays read it with it.
        if (live) live->set(format::response_extra_of(chunk));
      }
      if (json extra = format::response_extra_of(chunk); extra.is_object()) {
        if (!response_extra.is_object()) response_extra = json::object();
        for (auto& [key, value] : extra.items())
          if (!response_extra.contains(key)) response_extra[key] = std::move(value);
      }
      if (auto u = chunk.find("usage"); u != chunk.end() && u->is_object()) usage = *u;
      auto list = chunk.find("choices");
      if (list == chunk.end() || !list->is_array()) continue;
      for (auto& choice : *list) {
        auto index = choice.is_object() ? choice.find("index") : choice.end();
        if (index == choice.end() || !index->is_number_unsigned() || index->get<uint64_t>() >= gen->size()) {
          gen->fail(bad_response(upstream, "sent a chunk with a missing or out-of-range choice index"));
          co_return;
        }
        uint32_t i = index->get<uint32_t>();
        json delta = choice;
        delta.erase("index");
        choices[i].add(delta);
        gen->publish(i, std::move(delta));
      }
    }
  }
  if (!done) {
    gen->fail(bad_response(upstream, "ended the stream before [DONE]: not cached"));
    co_return;
  }
  std::vector<uint64_t> pieces;
  for (uint32_t i = 0; i < gen->size(); ++i) {
    if (!choices[i].finished()) {
      gen->fail(bad_response(upstream, "ended the stream with choice " + std::to_string(i) + " unfinished"));
      co_return;
    }
    if (auto problem = abnormal_ending(i, choices[i].finish_reason())) {
      log::warn("upstream \"" + upstream + "\" " + *problem + ": not cached");
      gen->fail(bad_response(upstream, *problem));
      co_return;
    }
    pieces.push_back(std::max<uint32_t>(1, choices[i].pieces()));
  }
  bool has_prompt = false, has_completion = false;
  uint32_t prompt_tokens = count_field(usage, "prompt_tokens", has_prompt);
  uint32_t completion_tokens = count_field(usage, "completion_tokens", has_completion);
  uint64_t total_pieces = 0;
  for (auto p : pieces) total_pieces += p;
  auto shares = format::split_proportionally(has_completion ? completion_tokens : total_pieces, pieces);
  auto usage_extra = format::split_usage_extra(usage, shares);
  std::vector<Sample> samples;
  for (uint32_t i = 0; i < gen->size(); ++i) {
    Sample s = sample_base(head, prompt_tokens, upstream);
    s.choice = choices[i].choice();
    s.finish_reason = choices[i].finish_reason();
    s.completion_tokens = shares[i];
    s.usage_extra = std::move(usage_extra[i]);
    s.response_extra = response_extra;
    samples.push_back(std::move(s));
  }
  gen->complete(std::move(samples));
}

}  // namespace reprise
