#pragma once
// Attribution of a cumulative energy counter (nvml_energy.hpp) to the engine's jobs
// (DESIGN.md section 5: measured around each step, split over requests by
// 0.2 * prefill_tokens + decode_tokens).
//
// The counter moves only about every 100 ms, far coarser than a step, so it is not
// read step by step but over windows of steps:
// - A window opens at a reading of the counter (before the first step of a burst, or
//   where the previous window closed). Each step adds the work units of every job
//   that ran in it (Scheduler: 0.2 per prefill token, 1 per decode token).
// - After a step, once at least `min_window_s` (0.2 s: two ticks of the counter) have
//   passed since the window opened, the counter is read and the window closes: its
//   joules are split over the jobs by the units each did in it, at the window's rate
//   (J per unit), and the next window opens at the same reading.
// - A job that finishes while a window is open gets its shares of the closed windows
//   plus its units in the open window at the rate of the last closed window (an
//   approximation: the current window's rate is not known yet, and its client is
//   waiting). When that window closes, its rate is still its joules over all the
//   units done in it, and the jobs still running get theirs at that rate; the
//   finished job's part at that rate is not charged again. So nothing is counted
//   twice, and the jobs' total differs from the closed windows' joules only by the
//   rate's drift over the last units of jobs that finished mid-window (exactly 0
//   with a steady rate). Before any window has closed there is no rate: such a job's
//   energy is not measured (finish() < 0), and the ledger then says "estimated".
// - Windows only span time in which the engine steps. When it goes idle, the open
//   window ends at the last step: a window that reached min_window_s closed at that
//   step's reading already, so what is still open is shorter and is discarded (its
//   units were charged at the last rate when their jobs finished; its joules are not
//   counted as measured), and the next burst opens a new window: idle time between
//   bursts is charged to nobody.
// - A failed read is skipped: the window stays open until a later reading closes it.
//   A counter that goes backwards (a driver reload) discards the window.
//
// Pure logic: times are passed in (seconds on any monotonic clock), so tests drive it
// with a fake clock and a fake counter. Not thread-safe (the engine thread owns it).
#include <cstdint>
#include <unordered_map>

namespace reprise::engine {

class EnergySplit {
public:
    explicit EnergySplit(double min_window_s = 0.2) : min_window_s_(min_window_s) {}

    // Work units `job` did in the step just run.
    void add(uint64_t job, double units);
    // Whether a reading at time t would do anything: no window is open (one opens), or
    // the open one is at least min_window_s old (it closes). Lets the caller skip
    // reading the counter after steps that cannot close a window.
    bool wants_reading(double t) const { return !open_ || t - t0_ >= min_window_s_; }
    // The counter read `mj` millijoules at time t.
    void reading(double t, uint64_t mj);
    // The counter could not be read.
    void read_failed() { ++read_failures_; }
    // The engine stopped stepping (nothing runs or waits): see the top of this file.
    void idle();
    // `job` completed: its measured joules, or -1 when there is no rate yet. Forgets it.
    double finish(uint64_t job);
    // `job` ended without a completion (failed, cancelled): its share is dropped.
    void forget(uint64_t job) { jobs_.erase(job); }

    bool window_open() const { return open_; }
    double measured_j() const { return measured_j_; }  // joules of every closed window
    uint64_t windows() const { return windows_; }      // windows closed
    uint64_t discarded() const { return discarded_; }  // windows discarded (too short at idle, counter reset)
    uint64_t read_failures() const { return read_failures_; }
    double rate() const { return rate_; }              // J per unit of the last closed window; < 0: none yet
    double min_window_s() const { return min_window_s_; }

private:
    struct Share {
        double closed_j = 0;     // from closed windows
        double open_units = 0;   // in the open window
        double loose_units = 0;  // outside any window that closed (discarded, or done with none open)
    };
    void close(uint64_t mj);
    void discard();

    double min_window_s_;
    std::unordered_map<uint64_t, Share> jobs_;
    bool open_ = false;
    double t0_ = 0;            // the open window's first reading
    uint64_t e0_ = 0;
    double window_units_ = 0;  // all units of the open window, finished jobs' included
    double rate_ = -1;
    double measured_j_ = 0;
    uint64_t windows_ = 0, discarded_ = 0, read_failures_ = 0;
};

}  // namespace reprise::engine
