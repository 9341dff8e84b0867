#pragma once
// data/energy.csv: one row per response (DESIGN.md section 5), written by a thread of
// its own so that no request waits on the disk. CodeCarbon's column names where they
// exist (timestamp, project_name, duration, emissions, emissions_rate,
// energy_consumed, pue), then Reprise's: event, namespace, model, prompt_tokens,
// completion_tokens, avoided_energy_kwh, avoided_emissions_kg, method, energy_class.
// Rotated by size: the full file becomes <path>.1 (replacing the previous one).
// Bounded: beyond 100,000 rows or 64 MiB waiting (a stalled disk; a row holds the
// client's model name, any length), rows are dropped and counted rather than held in
// memory. A failed write (a full disk) loses its rows, counted too, and the next
// batch opens the file again: nothing here stops or blocks the proxy.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

namespace reprise::cache {

struct EnergyRow {
  double timestamp = 0;       // unix seconds
  double duration_s = 0;      // the response's wall time
  std::string event;          // hit | miss | partial | engine
  std::string ns;
  std::string model;
  uint64_t prompt_tokens = 0;
  uint64_t completion_tokens = 0;
  double energy_kwh = 0;      // spent for this response
  double emissions_kg = 0;
  double avoided_energy_kwh = 0;
  double avoided_emissions_kg = 0;
  double pue = 1;
  std::string method = "estimated";
  std::string energy_class;
};

class EnergyCsv {
 public:
  static constexpr size_t kMaxQueued = 100'000;
  static constexpr size_t kMaxQueuedBytes = size_t(64) << 20;
  EnergyCsv(std::string path, uint64_t max_bytes);
  ~EnergyCsv();  // writes what is queued, then stops
  EnergyCsv(const EnergyCsv&) = delete;
  EnergyCsv& operator=(const EnergyCsv&) = delete;

  void append(EnergyRow row);
  // Blocks until every row appended so far is written (tests, shutdown).
  void flush();
  uint64_t dropped() const;
  // Rows lost to failed writes (the file could not be opened or written).
  uint64_t write_errors() const;

  static std::string header();
  static std::string format(const EnergyRow& row);

 private:
  void run();
  // Returns whether the rows reached the file.
  bool write_rows(std::deque<EnergyRow>& rows);

  const std::string path_;
  const uint64_t max_bytes_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<EnergyRow> queue_;
  bool writing_ = false;
  bool flushing_ = false;
  std::ofstream out_;  // the writer thread's only
  uint64_t size_ = 0;
  bool stop_ = false;
  uint64_t dropped_ = 0;
  size_t queued_bytes_ = 0;
  uint64_t write_errors_ = 0;  // under mu_; written by the writer thread
  std::thread thread_;
};

}  // namespace reprise::cache
