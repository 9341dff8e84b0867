#include "proxy/upstream_backend.hpp"

#include <chrono>
#include <optional>

#include "proxy/log.hpp"
#include "proxy/api_handler.hpp"
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

}  // namespace

UpstreamBackend::UpstreamBackend(asio::any_io_executor executor, UpstreamClient& client, const Dialect& dialect)
    : executor_(std::move(executor)), client_(client), dialect_(dialect) {}

void UpstreamBackend::generate(std::shared_ptr<cache::Generation> gen) {
  // Its own coroutine: the generation outlives any one client waiting on it. No
  // canceller (generation.hpp): when every client leaves, the call runs on and its
  // samples are stored all the same; it is paid for once sent, and a later request
  // (or a replay) finds them.
  asio::co_spawn(executor_, run(std::move(gen)), asio::detached);
}

awaitable<void> UpstreamBackend::run(std::shared_ptr<cache::Generation> gen) {
  const std::string& upstream = client_.config().name;
  const bool stream = gen->stream() && gen->endpoint() != cache::Endpoint::embeddings;

  UpstreamRequest request;
  request.method = http::verb::post;
  const auto* context = dynamic_cast<const UpstreamCallContext*>(gen->context());
  request.target = dialect_.upstream_target(gen->request(), stream, context ? std::string_view(context->query) : "");
  if (context) request.headers = context->headers;
  request.headers.set(http::field::content_type, "application/json");
  request.body = dialect_.upstream_body(gen->request(), gen->size(), stream)
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
    // The upstream's own error body when it has one ({"error": ...}, as every
    // dialect's has); anything else is wrapped. Each client gets it in its dialect's
    // shape when served (Dialect::error_body).
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
    auto samples = dialect_.samples_from_json(parsed, gen->size(), upstream);
    if (!samples) {
      log::warn("upstream \"" + upstream + "\" " + samples.error() + ": not cached");
      gen->fail(bad_response(upstream, samples.error()));
      co_return;
    }
    if (!samples.value().empty())
      gen->set_identity(samples.value().front().model, samples.value().front().system_fingerprint);
    gen->complete(std::move(samples.value()));
    co_return;
  }

  // A stream: the dialect's reader publishes every piece to the waiting clients as it
  // arrives and accumulates the samples stored once the stream ended complete.
  format::SseParser parser;
  auto reader = dialect_.stream_reader(*gen, upstream);
  std::vector<std::string> events;
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
      auto fault = reader->on_event(data);
      if (!fault) continue;
      if (fault->reported) {
        gen->fail(std::move(*fault->reported));
      } else {
        log::warn("upstream \"" + upstream + "\" " + fault->malformed + ": not cached");
        gen->fail(bad_response(upstream, fault->malformed));
      }
      co_return;
    }
  }
  auto samples = reader->finish();
  if (!samples) {
    log::warn("upstream \"" + upstream + "\" " + samples.error() + ": not cached");
    gen->fail(bad_response(upstream, samples.error()));
    co_return;
  }
  gen->complete(std::move(samples.value()));
}

}  // namespace reprise
