#include "proxy/cached_response.hpp"

#include <chrono>
#include <map>
#include <memory>

#include "proxy/async_event.hpp"

namespace reprise {
namespace {

using cache::Generation;
using cache::Sample;
using cache::Slot;
using nlohmann::json;

// Runs options.on_done once (the caller's flag makes it at most once).
void done(const ServeOptions& options, bool served) {
  if (options.on_done) options.on_done(served);
}

// The distinct generations of an assignment, in slot order.
std::vector<std::shared_ptr<Generation>> generations_of(const cache::Assignment& assignment) {
  std::vector<std::shared_ptr<Generation>> out;
  for (auto& slot : assignment.slots)
    if (slot.gen && std::find(out.begin(), out.end(), slot.gen) == out.end()) out.push_back(slot.gen);
  return out;
}

// Subscribes one event to several generations for as long as it lives.
class Subscription {
 public:
  Subscription(std::vector<std::shared_ptr<Generation>> gens, std::shared_ptr<AsyncEvent> event)
      : gens_(std::move(gens)) {
    for (auto& gen : gens_) ids_.push_back(gen->subscribe([event] { event->notify(); }));
  }
  ~Subscription() {
    for (size_t i = 0; i < gens_.size(); ++i) gens_[i]->unsubscribe(ids_[i]);
  }
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

 private:
  std::vector<std::shared_ptr<Generation>> gens_;
  std::vector<uint64_t> ids_;
};


// This request's hold on the generations it waits for (generation.hpp).
void release_claims(const cache::Assignment& assignment) {
  for (auto& slot : assignment.slots)
    if (slot.claim) slot.claim->release();
}

// Runs beside the response (see serve_assignment): on a closed connection, gives up
// the claims, then waits to be cancelled.
awaitable<void> watch_client(const cache::Assignment& assignment, ResponseWriter& writer) {
  // Cancellation arrives as an error code, never as an exception.
  co_await asio::this_coro::throw_if_cancelled(false);
  if (co_await writer.client_closed()) release_claims(assignment);
  auto state = co_await asio::this_coro::cancellation_state;
  if (state.cancelled() != asio::cancellation_type::none) co_return;
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer forever(executor, asio::steady_timer::time_point::max());
  co_await forever.async_wait(use_nothrow);
}

void set_cache_headers(http::fields& fields, const cache::Assignment& assignment, const ServeOptions& options) {
  fields.set("X-Reprise-Cache", options.outcome.empty() ? cache_outcome(assignment) : std::string_view(options.outcome));
  fields.set("X-Reprise-Samples", samples_header(assignment.slots));
}

// Waits until none of the generations is running.
awaitable<void> wait_until_ended(const std::vector<std::shared_ptr<Generation>>& gens) {
  if (gens.empty()) co_return;
  auto executor = co_await asio::this_coro::executor;
  auto event = std::make_shared<AsyncEvent>(executor);
  Subscription subscription(gens, event);
  for (;;) {
    bool running = false;
    for (auto& gen : gens) running = running || gen->view().state == Generation::State::running;
    if (!running) break;
    co_await event->wait();
  }
}

// The failure of a generation as the client's dialect writes errors.
std::string error_body_for(const ServeOptions& options, const cache::GenerationError& error) {
  return options.dialect->error_body(error.status, error.body);
}

awaitable<void> serve_json(const cache::Assignment& assignment, const ServeOptions& options,
                           const http::fields& headers, ResponseWriter& writer) {
  auto gens = generations_of(assignment);
  co_await wait_until_ended(gens);
  http::fields out = headers;
  set_cache_headers(out, assignment, options);
  for (auto& gen : gens) {
    if (gen->view().state == Generation::State::failed) {
      for (auto& [name, value] : gen->error().headers) out.set(name, value);
      options.dialect->error_headers(gen->error().status, out);
      std::string body = error_body_for(options, gen->error());
      done(options, false);
      co_await writer.send_json(gen->error().status, std::move(body), out);
      co_return;
    }
  }
  std::vector<const Sample*> samples;
  for (auto& slot : assignment.slots) samples.push_back(&slot.served());
  std::string text = options.dialect->json_body(samples, options.render);
  done(options, true);
  co_await writer.send_json(200, std::move(text), out);
}

// A streamed answer whose head waits for its first bytes. Until something can be
// written (a stored sample, or the first event of a generation for this client's
// choices) a failure is still answered with its own status and headers: an upstream's
// 429 stays a 429 with its Retry-After (the SDKs raise their typed error and retry),
// rather than a 200 whose stream carries the error. Nothing is sent while waiting: a
// long wait for the first token is normal, and the SDKs' read timeouts are minutes.
class HeldStream {
 public:
  HeldStream(ResponseWriter& writer, http::response_header<> head) : writer_(writer), head_(std::move(head)) {}

  // Sends the head first if it is still held. False once the client is gone.
  // (Named locals only: GCC 12 mishandles temporaries inside co_await expressions.)
  awaitable<bool> write(std::string_view data) {
    bool open = true;
    if (!started_) {
      started_ = true;
      http::response_header<> head = std::move(head_);
      open = co_await writer_.begin_stream(std::move(head));
    }
    if (open) open = co_await writer_.write_chunk(data);
    co_return open;
  }
  awaitable<bool> end() {
    bool ended = co_await writer_.end_stream();
    co_return ended;
  }

  // Ends the answer with a generation's failure: as a response of its own while
  // nothing was written, else (headers gone) as an error event in the stream, which
  // the SDKs raise on, cut short so nobody takes the response as complete.
  awaitable<void> fail(const cache::GenerationError& error, const ServeOptions& options, StreamRenderer& renderer) {
    std::string body = error_body_for(options, error);
    if (!started_) {
      started_ = true;
      http::fields out;
      for (auto& field : head_)
        if (field.name() != http::field::content_type && field.name() != http::field::cache_control)
          out.insert(field.name_string(), field.value());
      for (auto& [name, value] : error.headers) out.set(name, value);
      options.dialect->error_headers(error.status, out);
      co_await writer_.send_json(error.status, std::move(body), out);
      co_return;
    }
    std::string error_event;
    renderer.error(error_event, body);
    co_await writer_.write_chunk(error_event);
    writer_.abort();
  }

 private:
  ResponseWriter& writer_;
  http::response_header<> head_;
  bool started_ = false;
};

// Relays the live events of `gen` for the choices in `mine` (choice -> the client's
// slots), then replays the samples of the choices it published nothing for (a
// generation made by a non-streamed call, or by a backend that does not stream this
// dialect). Returns false when the response must end (client gone, or it failed).
awaitable<bool> relay_generation(const std::shared_ptr<Generation>& gen,
                                 const std::map<uint32_t, std::vector<uint32_t>>& mine, StreamRenderer& renderer,
                                 const ServeOptions& options, HeldStream& writer) {
  auto executor = co_await asio::this_coro::executor;
  auto event = std::make_shared<AsyncEvent>(executor);
  Subscription subscription({gen}, event);
  size_t consumed = 0;
  std::vector<Generation::Event> events;
  std::map<uint32_t, bool> relayed;  // choice -> whether an event of it was relayed
  for (;;) {
    Generation::View view = gen->view();
    if (consumed < view.event_count) {
      events.clear();
      gen->read_events(consumed, view.event_count - consumed, events);
      consumed += events.size();
      std::string batch;  // everything that arrived, in one write
      for (auto& event_ : events) {
        auto it = mine.find(event_.choice);
        if (it == mine.end()) continue;
        relayed[event_.choice] = true;
        for (uint32_t slot : it->second) renderer.live(batch, slot, *gen, event_.delta);
      }
      if (!batch.empty() && !co_await writer.write(batch)) co_return false;
      continue;
    }
    if (view.state == Generation::State::running) {
      co_await event->wait();
      continue;
    }
    if (view.state == Generation::State::failed) {
      done(options, false);
      co_await writer.fail(gen->error(), options, renderer);
      co_return false;
    }
    std::string batch;
    for (auto& [choice, slots] : mine) {
      if (relayed[choice]) continue;
      for (uint32_t slot : slots) renderer.replay(batch, slot, gen->samples()[choice]);
    }
    if (!batch.empty() && !co_await writer.write(batch)) co_return false;
    co_return true;
  }
}

awaitable<void> serve_stream(const cache::Assignment& assignment, const ServeOptions& options,
                             const http::fields& headers, ResponseWriter& writer) {
  http::response_header<> response_head;
  response_head.result(http::status::ok);
  for (auto& field : headers) response_head.set(field.name_string(), field.value());
  set_cache_headers(response_head, assignment, options);
  response_head.set(http::field::content_type, "text/event-stream; charset=utf-8");
  response_head.set(http::field::cache_control, "no-cache");

  auto renderer = options.dialect->stream_renderer(options.render);
  const auto& slots = assignment.slots;
  std::string batch;
  auto served = [&slots] {
    std::vector<const Sample*> samples;
    for (auto& slot : slots) samples.push_back(&slot.served());
    return samples;
  };
  if (assignment.stored() == slots.size()) {
    // A full hit has every byte at hand: one response with a Content-Length, one
    // write, instead of the header, the events and the last chunk as three chunked
    // writes (bench/peers.sh: SSE hits were a third slower than JSON hits for it).
    // SSE readers take either framing. The events of a short answer fit the reserve
    // (16 words: 4.4 kB); growing to it a doubling at a time cost ~3k instructions.
    batch.reserve(8192);
    for (size_t i = 0; i < slots.size(); ++i) renderer->replay(batch, static_cast<uint32_t>(i), *slots[i].sample);
    renderer->finish(batch, served());
    http::response<http::string_body> res{std::move(response_head)};
    res.body() = std::move(batch);
    done(options, true);
    co_await writer.send(std::move(res));
    co_return;
  }
  HeldStream stream(writer, std::move(response_head));
  for (size_t i = 0; i < slots.size();) {
    if (slots[i].sample) {  // stored: replayed at once
      renderer->replay(batch, static_cast<uint32_t>(i), *slots[i].sample);
      ++i;
      continue;
    }
    if (!batch.empty()) {
      if (!co_await stream.write(batch)) co_return;
      batch.clear();
    }
    // A run of slots served by one generation: relayed live.
    std::map<uint32_t, std::vector<uint32_t>> mine;
    const auto gen = slots[i].gen;
    for (; i < slots.size() && slots[i].gen == gen; ++i) mine[slots[i].choice].push_back(static_cast<uint32_t>(i));
    if (!co_await relay_generation(gen, mine, *renderer, options, stream)) co_return;
  }
  renderer->finish(batch, served());
  done(options, true);
  if (!co_await stream.write(batch)) co_return;
  co_await stream.end();
}

}  // namespace

std::string_view cache_outcome(const cache::Assignment& assignment) {
  size_t stored = assignment.stored();
  if (stored == assignment.slots.size()) return "hit";
  return stored == 0 ? "miss" : "partial";
}

std::string samples_header(const std::vector<Slot>& slots) {
  std::string out;
  for (size_t i = 0; i < slots.size();) {
    uint64_t first = slots[i].index(), last = first;
    size_t j = i + 1;
    while (j < slots.size() && slots[j].index() == last + 1) last = slots[j++].index();
    if (!out.empty()) out += ',';
    out += std::to_string(first) + "-" + std::to_string(last);
    i = j;
  }
  return out;
}

awaitable<bool> serve_assignment(const cache::Assignment& assignment, const ServeOptions& caller_options,
                                 const http::fields& headers, ResponseWriter& writer) {
  // on_done runs once: where the answer ends, or below when the client left first.
  bool reported = false;
  ServeOptions options = caller_options;
  options.on_done = [&reported, &caller_options](bool served) {
    if (reported) return;
    reported = true;
    if (caller_options.on_done) caller_options.on_done(served);
  };
  auto gens = generations_of(assignment);
  const bool stream = options.render.stream && options.render.endpoint != cache::Endpoint::embeddings;
  if (gens.empty()) {
    if (stream) co_await serve_stream(assignment, options, headers, writer);
    else co_await serve_json(assignment, options, headers, writer);
  } else {
    // While it waits on generations, the connection is watched: a client that closes
    // it gives up its claims at once (a JSON client is otherwise noticed only at the
    // final write, a streaming one at its next write). The watch never ends by
    // itself; it is cancelled when serving ends.
    auto serving = stream ? serve_stream(assignment, options, headers, writer)
                          : serve_json(assignment, options, headers, writer);
    auto watching = watch_client(assignment, writer);
    using namespace asio::experimental::awaitable_operators;
    auto both = std::move(serving) || std::move(watching);
    co_await std::move(both);
  }
  // The client has its answer, or is gone: it wants nothing more from the
  // generations. Once every client of one has let go, the engine stops it and nothing
  // is stored; an upstream call runs on for the cache (generation.hpp). Either way
  // the answer is accounted once they end.
  release_claims(assignment);
  co_await wait_until_ended(gens);
  bool served = true;
  for (auto& gen : gens)
    if (gen->view().state != Generation::State::done) served = false;
  options.on_done(served);
  co_return served;
}

}  // namespace reprise
