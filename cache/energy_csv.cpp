#include "cache/energy_csv.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>

namespace reprise::cache {
namespace {

// Each piece is appended to the row in place: one row is written per response, and
// its temporaries (a string per field) and printf's format parsing were most of the
// writer thread's ~10k instructions per row (callgrind, bench/peers.sh hits).
void append_field(std::string& out, std::string_view value) {
  if (value.find_first_of(",\"\n\r") == std::string_view::npos) {
    out += value;
    return;
  }
  out += '"';
  for (char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

// The shortest text that reads back as the same double: exact, and (callgrind) about
// ten times cheaper than printf's %g, which matters at one row per response.
void append_number(std::string& out, double value) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, std::isfinite(value) ? value : 0.0);
  if (ec == std::errc()) out.append(buf, end);
  else out += '0';
}

void append_digits(std::string& out, int value, int width) {
  char buf[8];
  for (int i = width - 1; i >= 0; --i, value /= 10) buf[i] = static_cast<char>('0' + value % 10);
  out.append(buf, static_cast<size_t>(width));
}

// "2026-11-18T11:06:40.500Z". The digits by hand when every part has its usual width
// (always, for the clock's times); printf for the rest, whose output they match.
void append_iso8601(std::string& out, double unix_seconds) {
  std::time_t whole = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&whole, &tm);
  const int year = tm.tm_year + 1900;
  const int millis = static_cast<int>((unix_seconds - double(whole)) * 1000);
  if (year < 0 || year > 9999 || millis < 0 || millis > 999) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                  tm.tm_min, tm.tm_sec, millis);
    out += buf;
    return;
  }
  append_digits(out, year, 4);
  out += '-';
  append_digits(out, tm.tm_mon + 1, 2);
  out += '-';
  append_digits(out, tm.tm_mday, 2);
  out += 'T';
  append_digits(out, tm.tm_hour, 2);
  out += ':';
  append_digits(out, tm.tm_min, 2);
  out += ':';
  append_digits(out, tm.tm_sec, 2);
  out += '.';
  append_digits(out, millis, 3);
  out += 'Z';
}

}  // namespace

std::string EnergyCsv::header() {
  return "timestamp,project_name,duration,emissions,emissions_rate,energy_consumed,pue,event,namespace,model,"
         "prompt_tokens,completion_tokens,avoided_energy_kwh,avoided_emissions_kg,method,energy_class\n";
}

std::string EnergyCsv::format(const EnergyRow& r) {
  // CodeCarbon's units: duration in s, emissions in kg CO2e, energy in kWh,
  // emissions_rate in kg/s.
  const double rate = r.duration_s > 0 ? r.emissions_kg / r.duration_s : 0;
  std::string out;
  out.reserve(256);
  auto field = [&out](const std::string& text) {
    append_field(out, text);
    out += ',';
  };
  auto num = [&out](double value) {
    append_number(out, value);
    out += ',';
  };
  auto count = [&out](uint64_t value) {
    char buf[24];
    out.append(buf, std::to_chars(buf, buf + sizeof buf, value).ptr).push_back(',');
  };
  append_iso8601(out, r.timestamp);
  out += ",reprise,";
  num(r.duration_s);
  num(r.emissions_kg);
  num(rate);
  num(r.energy_kwh);
  num(r.pue);
  field(r.event);
  field(r.ns);
  field(r.model);
  count(r.prompt_tokens);
  count(r.completion_tokens);
  num(r.avoided_energy_kwh);
  num(r.avoided_emissions_kg);
  field(r.method);
  append_field(out, r.energy_class);
  out += '\n';
  return out;
}

EnergyCsv::EnergyCsv(std::string path, uint64_t max_bytes)
    : path_(std::move(path)), max_bytes_(max_bytes), thread_([this] { run(); }) {}

EnergyCsv::~EnergyCsv() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

namespace {

// A queued row's heap footprint, roughly: the struct and its strings.
size_t row_bytes(const EnergyRow& r) {
  return sizeof(EnergyRow) + r.event.capacity() + r.ns.capacity() + r.model.capacity() + r.method.capacity() +
         r.energy_class.capacity();
}

}  // namespace

void EnergyCsv::append(EnergyRow row) {
  bool was_empty;
  const size_t bytes = row_bytes(row);
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= kMaxQueued || queued_bytes_ + bytes > kMaxQueuedBytes) {
      ++dropped_;
      return;
    }
    was_empty = queue_.empty();
    queue_.push_back(std::move(row));
    queued_bytes_ += bytes;
  }
  // Only the first row of a batch wakes the writer. Waking it per row made it switch
  // in and out once per response while it gathers (bench/peers.sh: a third of the hit
  // path's throughput on one core); now it wakes once per 50 ms batch.
  if (was_empty) wake_.notify_one();
}

void EnergyCsv::flush() {
  std::unique_lock lock(mu_);
  flushing_ = true;
  wake_.notify_all();
  idle_.wait(lock, [this] { return queue_.empty() && !writing_; });
  flushing_ = false;
}

uint64_t EnergyCsv::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

uint64_t EnergyCsv::write_errors() const {
  std::lock_guard lock(mu_);
  return write_errors_;
}

void EnergyCsv::run() {
  // Formatting a 50 ms batch takes a few ms of CPU; at the default priority it took
  // them from the I/O threads in one go and showed up in their p99 (bench/peers.sh,
  // one core). A milder priority lets the scheduler give the I/O threads the core
  // first, while the writer still gets ~30% of it: enough to keep up, so rows are
  // late by a little, never dropped for it. (A per-thread nice is Linux behaviour.)
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 5);
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty() && stop_) break;
    // Let rows gather for a moment: one write per 50 ms instead of one per response
    // keeps this thread from competing with the request threads for the cores.
    if (!stop_) wake_.wait_for(lock, std::chrono::milliseconds(50), [this] { return stop_ || flushing_; });
    std::deque<EnergyRow> rows;
    rows.swap(queue_);
    queued_bytes_ = 0;
    writing_ = true;
    lock.unlock();
    const bool written = write_rows(rows);
    lock.lock();
    if (!written) write_errors_ += rows.size();
    writing_ = false;
    if (queue_.empty()) idle_.notify_all();
  }
  idle_.notify_all();
}

bool EnergyCsv::write_rows(std::deque<EnergyRow>& rows) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path path(path_);
  if (!out_.is_open()) {  // first write, or after a failure: (re)open and measure
    if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
    size_ = fs::exists(path, ec) ? fs::file_size(path, ec) : 0;
    if (ec) size_ = 0;
    out_.open(path, std::ios::app | std::ios::binary);
    if (!out_) return false;  // a missing disk must not take the proxy down; rows are lost
  }
  std::string text;
  for (auto& row : rows) {
    std::string line = format(row);
    if (size_ + text.size() > 0 && size_ + text.size() + line.size() > max_bytes_) {
      out_ << text;
      text.clear();
      out_.close();
      fs::rename(path, path.string() + ".1", ec);  // replaces the previous .1
      out_.open(path, std::ios::trunc | std::ios::binary);
      if (!out_) return false;
      size_ = 0;
    }
    if (size_ + text.size() == 0) text += header();
    text += line;
  }
  const uint64_t before = size_;
  size_ += text.size();
  out_ << text;
  out_.flush();  // readers (and a crash) see whole rows
  if (out_) return true;
  // A full disk: the rows are lost (counted), a torn last row is cut off, and the
  // file is opened and measured again for the next batch, so rows resume once there
  // is space.
  out_.close();
  out_.clear();
  fs::resize_file(path, before, ec);
  return false;
}

}  // namespace reprise::cache
