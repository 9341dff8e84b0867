#include "engine/thread_pool.hpp"

#include <algorithm>

namespace reprise::engine {

namespace {
// Chunk i of n_chunks over [0, n), aligned to grain.
void chunk(int64_t n, int64_t grain, int i, int n_chunks, int64_t* b, int64_t* e) {
    const int64_t units = (n + grain - 1) / grain;
    const int64_t per = units / n_chunks, extra = units % n_chunks;
    const int64_t ub = i * per + std::min<int64_t>(i, extra);
    const int64_t ue = ub + per + (i < extra ? 1 : 0);
    *b = std::min(n, ub * grain);
    *e = std::min(n, ue * grain);
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
    for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_work_.notify_all();
    for (auto& t : threads_) t.join();
}

void ThreadPool::worker(int idx) {
    uint64_t seen = 0;
    for (;;) {
        const std::function<void(int64_t, int64_t)>* job;
        int64_t n, grain;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_work_.wait(lk, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            job = job_;
            n = job_n_;
            grain = job_grain_;
        }
        int64_t b, e;
        chunk(n, grain, idx, n_threads_, &b, &e);
        if (b < e) (*job)(b, e);
        {
            std::lock_guard<std::mutex> lk(mu_);
            if (--pending_ == 0) cv_done_.notify_one();
        }
    }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    std::lock_guard<std::mutex> call(call_mu_);
    {
        std::lock_guard<std::mutex> lk(mu_);
        job_ = &fn;
        job_n_ = n;
        job_grain_ = grain;
        pending_ = n_threads_ - 1;
        ++generation_;
    }
    cv_work_.notify_all();
    int64_t b, e;
    chunk(n, grain, 0, n_threads_, &b, &e);
    if (b < e) fn(b, e);
    std::unique_lock<std::mutex> lk(mu_);
    cv_done_.wait(lk, [&] { return pending_ == 0; });
}

}  // namespace reprise::engine
