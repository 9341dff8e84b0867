#include "cache/generation.hpp"

#include <algorithm>

namespace reprise::cache {

Generation::Generation(std::shared_ptr<const CanonicalRequest> request, Endpoint endpoint,
                       uint32_t size, bool stream, std::shared_ptr<const CallContext> context)
    : request_(std::move(request)), endpoint_(endpoint), size_(size), stream_(stream),
      context_(std::move(context)) {}

void Generation::set_identity(std::string model, std::string system_fingerprint, nlohmann::json response_extra) {
  std::lock_guard lock(mu_);
  model_ = std::move(model);
  fingerprint_ = std::move(system_fingerprint);
  response_extra_ = std::move(response_extra);
}

void Generation::publish(uint32_t choice, nlohmann::json delta) {
  std::vector<Listener> to_call;
  {
    std::lock_guard lock(mu_);
    if (state_ != State::running || ending_ || choice >= size_) return;
    events_.push_back({choice, std::move(delta)});
    for (auto& [id, listener] : listeners_) to_call.push_back(listener);
  }
  // Outside the lock: a listener may read at once.
  for (auto& listener : to_call) listener();
}

void Generation::complete(std::vector<Sample> samples) {
  if (samples.size() != size_) {
    fail({502, R"({"error":{"message":"backend returned )" + std::to_string(samples.size()) +
                   " choices, expected " + std::to_string(size_) +
                   R"(","type":"upstream_error","param":null,"code":"bad_upstream_response"}})", {}});
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (state_ != State::running || ending_) return;
    ending_ = true;
    samples_ = std::move(samples);
  }
  end(State::done);
}

void Generation::fail(GenerationError error) {
  {
    std::lock_guard lock(mu_);
    if (state_ != State::running || ending_) return;
    ending_ = true;
    error_ = std::move(error);
  }
  end(State::failed);
}

void Generation::end(State final_state) {
  // samples_ / error_ are final now (ending_ keeps every other writer out). The state
  // waiters see changes only after on_end_ ran, so nobody answers a client from
  // samples that are not committed yet.
  std::optional<GenerationError> refused;
  if (on_end_) refused = on_end_(*this, final_state);
  std::vector<Listener> to_call;
  {
    std::lock_guard lock(mu_);
    if (refused && final_state == State::done) {
      final_state = State::failed;
      error_ = std::move(*refused);
    }
    state_ = final_state;
    for (auto& [id, listener] : listeners_) to_call.push_back(listener);
  }
  for (auto& listener : to_call) listener();
}

uint64_t Generation::subscribe(Listener listener) {
  bool ended;
  uint64_t id;
  {
    std::lock_guard lock(mu_);
    id = ++next_listener_;
    listeners_.emplace_back(id, listener);
    ended = state_ != State::running;
  }
  if (ended) listener();
  return id;
}

void Generation::unsubscribe(uint64_t id) {
  std::lock_guard lock(mu_);
  std::erase_if(listeners_, [id](const auto& entry) { return entry.first == id; });
}

Generation::View Generation::view() const {
  std::lock_guard lock(mu_);
  return {state_, events_.size()};
}

void Generation::read_events(size_t from, size_t max, std::vector<Event>& out) const {
  std::lock_guard lock(mu_);
  for (size_t i = from; i < events_.size() && i - from < max; ++i) out.push_back(events_[i]);
}

std::string Generation::model() const {
  std::lock_guard lock(mu_);
  return model_;
}

nlohmann::json Generation::response_extra() const {
  std::lock_guard lock(mu_);
  return response_extra_;
}

std::string Generation::system_fingerprint() const {
  std::lock_guard lock(mu_);
  return fingerprint_;
}

// ---- cancellation ----

Generation::Claim::Claim(std::shared_ptr<Generation> gen) : gen_(std::move(gen)) { gen_->add_claim(); }

void Generation::Claim::release() {
  if (released_.exchange(true)) return;
  gen_->drop_claim();
}

void Generation::add_claim() {
  std::lock_guard lock(mu_);
  ++claims_;
}

void Generation::drop_claim() {
  bool last;
  {
    std::lock_guard lock(mu_);
    if (claims_ > 0) --claims_;
    last = claims_ == 0 && state_ == State::running && !ending_ && !abandoned_ && canceller_;
  }
  if (!last) return;
  if (on_unclaimed_) {
    on_unclaimed_(*this);
  } else if (abandon_if_unclaimed()) {
    cancel();
  }
}

void Generation::set_canceller(std::function<void()> cancel) {
  std::lock_guard lock(mu_);
  canceller_ = std::move(cancel);
}

bool Generation::abandon_if_unclaimed() {
  std::lock_guard lock(mu_);
  if (claims_ > 0 || state_ != State::running || ending_ || abandoned_ || !canceller_) return false;
  abandoned_ = true;
  return true;
}

void Generation::cancel() {
  std::function<void()> canceller;
  {
    std::lock_guard lock(mu_);
    if (!abandoned_) return;
    canceller = std::move(canceller_);
    canceller_ = nullptr;
  }
  if (canceller) canceller();
}

bool Generation::abandoned() const {
  std::lock_guard lock(mu_);
  return abandoned_;
}

uint32_t Generation::claims() const {
  std::lock_guard lock(mu_);
  return claims_;
}

}  // namespace reprise::cache
