#pragma once
// Test support: what each namespace received from a cluster of replicas, and the check
// of the invariants of DESIGN.md section 1 over it (I1 no sample served twice in a
// namespace, I2 an index names one sample forever, I3 every namespace reads the same
// list in the same order).
//
// The fake upstream's texts are random per call, so a sample's content identifies it:
// two indices holding the same text, or one index read as two texts, cannot both come
// from a correct store. A history records every request's outcome: ok (a 200, its
// indices from X-Reprise-Samples and the contents in the same order), fail (an answer
// that says it did nothing: 503; or a connection refused before anything was sent) or
// unknown (sent, no complete answer: the replica died, the client timed out). Only ok
// answers were seen by a client, so only they are checked; unknown ones explain gaps.
#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "services.hpp"

namespace reprise::test {

struct Observation {
  enum class Outcome { ok, fail, unknown };
  Outcome outcome = Outcome::unknown;
  unsigned status = 0;
  int replica = -1;
  std::string ns, key;
  int n = 0;
  std::vector<uint64_t> indices;
  std::vector<std::string> samples;  // contents, in the order of `indices`
  bool retry_after = false;          // a 503 said when to come back
  Clock::time_point start, end;
  std::string note;  // why unknown, or what was wrong with a 200
};

// "0-2,5-5" (X-Reprise-Samples) as indices; empty on a malformed value.
inline std::vector<uint64_t> parse_indices(const std::string& header) {
  std::vector<uint64_t> out;
  std::stringstream in(header);
  std::string range;
  while (std::getline(in, range, ',')) {
    auto dash = range.find('-');
    try {
      uint64_t lo = std::stoull(range.substr(0, dash));
      uint64_t hi = dash == std::string::npos ? lo : std::stoull(range.substr(dash + 1));
      if (hi < lo || hi - lo > 1000) return {};
      for (uint64_t i = lo; i <= hi; ++i) out.push_back(i);
    } catch (const std::exception&) {
      return {};
    }
  }
  return out;
}

// The chat request of a hot key: the key's label is the prompt, so every replica and
// namespace that asks for label L asks for the same cache key.
inline std::string key_prompt(const std::string& key) { return "Cluster check, key " + key; }

inline std::vector<std::string> choice_contents(const Response& r) {
  const nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
  std::vector<std::string> out;
  if (!body.is_object() || !body.contains("choices")) return out;
  for (auto& choice : body["choices"]) out.push_back(choice["message"]["content"].get<std::string>());
  return out;
}

// One chat request to a replica; its observation (never throws).
inline Observation ask_replica(uint16_t port, int replica, const std::string& ns, const std::string& key, int n,
                               std::chrono::milliseconds timeout,
                               std::vector<std::pair<std::string, std::string>> headers = {}) {
  Observation o;
  o.replica = replica;
  o.ns = ns;
  o.key = key;
  o.n = n;
  o.start = Clock::now();
  headers.emplace_back("X-Reprise-Namespace", ns);
  std::string request = build_request("POST", "/v1/chat/completions", chat_body(key_prompt(key), n).dump(), headers);
  std::unique_ptr<Conn> conn;
  try {
    conn = std::make_unique<Conn>(port);
  } catch (const std::exception& e) {
    o.outcome = Observation::Outcome::fail;  // nothing was sent
    o.note = e.what();
    o.end = Clock::now();
    return o;
  }
  try {
    if (!conn->send(request)) throw std::runtime_error("send failed");
    Response r = read_response(*conn, timeout);
    o.end = Clock::now();
    o.status = r.status;
    if (!r.complete) {
      o.note = "cut short";
      return o;
    }
    if (r.status == 200) {
      o.indices = parse_indices(r.header("X-Reprise-Samples"));
      o.samples = choice_contents(r);
      o.outcome = Observation::Outcome::ok;
      o.note = "X-Reprise-Cache: " + r.header("X-Reprise-Cache") + ", X-Reprise-Samples: " + r.header("X-Reprise-Samples");
    } else if (r.status == 503) {
      o.outcome = Observation::Outcome::fail;
      o.retry_after = !r.header("Retry-After").empty();
      o.note = r.body.substr(0, 300);
    } else {
      o.outcome = Observation::Outcome::fail;
      o.note = r.body.substr(0, 300);
    }
  } catch (const std::exception& e) {
    o.end = Clock::now();
    o.note = e.what();
  }
  return o;
}

class History {
 public:
  void add(Observation o) {
    std::lock_guard lock(mu_);
    list_.push_back(std::move(o));
  }
  std::vector<Observation> all() const {
    std::lock_guard lock(mu_);
    return list_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Observation> list_;
};

struct CheckReport {
  size_t requests = 0, ok = 0, unavailable = 0, unavailable_without_retry_after = 0, other = 0, unknown = 0;
  size_t samples_served = 0;       // every (ns, key, index) served
  size_t distinct_samples = 0;     // every (key, index) served
  size_t read_back = 0;            // of those, re-read and compared
  size_t gaps = 0;                 // indices below a namespace's highest that it never got
  std::vector<std::string> violations;
  // The served sample of each (key, index).
  std::map<std::pair<std::string, uint64_t>, std::string> served;

  std::string summary() const {
    std::ostringstream out;
    out << "requests " << requests << ": ok " << ok << ", 503 " << unavailable << " (without Retry-After "
        << unavailable_without_retry_after << "), other " << other << ", unknown " << unknown
        << "; samples served " << samples_served << " (distinct " << distinct_samples << ", read back " << read_back
        << "); gaps " << gaps << "; violations " << violations.size();
    for (size_t i = 0; i < violations.size() && i < 20; ++i) out << "\n  " << violations[i];
    return out.str();
  }
};

// The invariants over a history (no requests sent).
inline CheckReport check_history(const std::vector<Observation>& history) {
  CheckReport report;
  auto violation = [&](std::string text) { report.violations.push_back(std::move(text)); };
  std::map<std::pair<std::string, std::string>, std::map<uint64_t, std::string>> per_ns;  // (ns, key) -> index -> text
  std::map<std::pair<std::string, std::string>, uint64_t> where;                           // (key, text) -> index
  for (auto& o : history) {
    ++report.requests;
    switch (o.outcome) {
      case Observation::Outcome::unknown: ++report.unknown; continue;
      case Observation::Outcome::fail:
        if (o.status == 503) {
          ++report.unavailable;
          if (!o.retry_after) ++report.unavailable_without_retry_after;
        } else if (o.status != 0) {
          ++report.other;
        }
        continue;
      case Observation::Outcome::ok: ++report.ok; break;
    }
    const std::string who = "ns " + o.ns + " key " + o.key + " (replica " + std::to_string(o.replica) + ")";
    if (o.indices.size() != static_cast<size_t>(o.n) || o.samples.size() != o.indices.size()) {
      violation(who + ": asked n=" + std::to_string(o.n) + ", got " + std::to_string(o.indices.size()) + " indices and " +
                std::to_string(o.samples.size()) + " choices");
      continue;
    }
    auto& mine = per_ns[{o.ns, o.key}];
    for (size_t i = 0; i < o.indices.size(); ++i) {
      const uint64_t idx = o.indices[i];
      const std::string& text = o.samples[i];
      ++report.samples_served;
      if (!mine.emplace(idx, text).second) violation(who + ": index " + std::to_string(idx) + " served twice (I1)");
      auto [at, fresh] = report.served.emplace(std::make_pair(o.key, idx), text);
      if (!fresh && at->second != text)
        violation("key " + o.key + " index " + std::to_string(idx) + " holds two samples: '" + at->second + "' and '" +
                  text + "' (" + who + ") (I2/I3)");
      auto [w, first] = where.emplace(std::make_pair(o.key, text), idx);
      if (!first && w->second != idx)
        violation("key " + o.key + ": one sample at indices " + std::to_string(w->second) + " and " +
                  std::to_string(idx) + " (" + who + ")");
    }
  }
  // A namespace that got the same text at two indices was served one sample twice (I1).
  for (auto& [nk, indices] : per_ns) {
    std::set<std::string> texts;
    for (auto& [idx, text] : indices)
      if (!texts.insert(text).second)
        violation("ns " + nk.first + " key " + nk.second + ": one sample served twice (I1)");
    if (!indices.empty()) report.gaps += indices.rbegin()->first + 1 - indices.size();
  }
  report.distinct_samples = report.served.size();
  return report;
}

// Re-reads every served (key, index) with X-Reprise-Sample from the given replicas in
// turn (a namespace of its own; ranges of up to 64 indices, so an index never served,
// a gap, is made now: harmless) and adds a violation for every index whose sample is
// not the one served (a lost sample).
inline void verify_read_back(CheckReport& report, const std::vector<uint16_t>& ports,
                             std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  std::map<std::string, uint64_t> highest;
  for (auto& [ki, text] : report.served) highest[ki.first] = std::max(highest[ki.first], ki.second);
  size_t turn = 0;
  for (auto& [key, top] : highest) {
    for (uint64_t lo = 0; lo <= top; lo += 64) {
      const uint64_t hi = std::min(top, lo + 63);
      const uint16_t port = ports[turn++ % ports.size()];
      const std::string range = std::to_string(lo) + "-" + std::to_string(hi);
      Observation o = ask_replica(port, -1, "read-back", key, 1, timeout, {{"X-Reprise-Sample", range}});
      // A 503 says the cluster cannot confirm yet (a shard's replica still resyncing
      // after a failover): asked again, for a bounded time; a wrong sample never is.
      for (auto until = std::chrono::steady_clock::now() + timeout;
           o.status == 503 && std::chrono::steady_clock::now() < until;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        o = ask_replica(port, -1, "read-back", key, 1, timeout, {{"X-Reprise-Sample", range}});
      }
      if (o.outcome != Observation::Outcome::ok || o.indices.size() != o.samples.size()) {
        report.violations.push_back("read back of key " + key + " indices " + range + " on port " +
                                    std::to_string(port) + " failed: status " + std::to_string(o.status) + " " + o.note);
        continue;
      }
      for (size_t i = 0; i < o.indices.size(); ++i) {
        auto it = report.served.find({key, o.indices[i]});
        if (it == report.served.end()) continue;
        ++report.read_back;
        if (it->second != o.samples[i])
          report.violations.push_back("key " + key + " index " + std::to_string(o.indices[i]) + " served as '" +
                                      it->second + "', reads back as '" + o.samples[i] + "' (lost)");
      }
    }
  }
}

}  // namespace reprise::test
