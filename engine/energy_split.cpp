#include "engine/energy_split.hpp"

namespace reprise::engine {

void EnergySplit::add(uint64_t job, double units) {
    if (!(units > 0)) return;
    Share& s = jobs_[job];
    if (open_) {
        s.open_units += units;
        window_units_ += units;
    } else {
        // No window (the burst's opening read failed): measured at the last rate, if any.
        s.loose_units += units;
    }
}

void EnergySplit::reading(double t, uint64_t mj) {
    if (!open_) {
        open_ = true;
        t0_ = t;
        e0_ = mj;
        return;
    }
    if (mj < e0_) {  // the counter went backwards: this window's joules are unknown
        discard();
        open_ = true;
        t0_ = t;
        e0_ = mj;
        return;
    }
    if (t - t0_ < min_window_s_) return;
    close(mj);
    open_ = true;
    t0_ = t;
    e0_ = mj;
}

void EnergySplit::close(uint64_t mj) {
    const double joules = double(mj - e0_) / 1000.0;
    measured_j_ += joules;
    ++windows_;
    if (window_units_ > 0) {
        rate_ = joules / window_units_;
        for (auto& [id, s] : jobs_) {
            s.closed_j += s.open_units * rate_;
            s.open_units = 0;
        }
    }
    window_units_ = 0;
    open_ = false;
}

void EnergySplit::discard() {
    for (auto& [id, s] : jobs_) {
        s.loose_units += s.open_units;
        s.open_units = 0;
    }
    window_units_ = 0;
    open_ = false;
    ++discarded_;
}

void EnergySplit::idle() {
    if (!open_) return;
    // A window that reached min_window_s closed at the reading that saw it (the last
    // step's): what is open now is shorter, too short to trust the counter over.
    if (window_units_ > 0) discard();
    else open_ = false;  // opened, and nothing ran in it: not a window at all
}

double EnergySplit::finish(uint64_t job) {
    auto it = jobs_.find(job);
    Share s = it == jobs_.end() ? Share{} : it->second;
    if (it != jobs_.end()) jobs_.erase(it);
    if (rate_ < 0) return -1;
    // Its open-window units stay in window_units_: the window's rate, when it closes,
    // is still its joules over all the work done in it.
    return s.closed_j + (s.open_units + s.loose_units) * rate_;
}

}  // namespace reprise::engine
