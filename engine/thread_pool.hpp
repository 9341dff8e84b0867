#pragma once
// A small fixed thread pool for data-parallel kernels: parallel_for splits [0, n) into
// one contiguous chunk per thread (the caller's thread runs a chunk too), so a matmul
// with n_threads = 1 runs inline with no synchronisation at all.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace reprise::engine {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int n_threads() const { return n_threads_; }
    // fn(begin, end) over disjoint chunks covering [0, n); returns when all are done.
    // Chunk boundaries are multiples of `grain` (except the last) so callers can keep
    // work items (e.g. 4-row tiles) whole.
    void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

private:
    void worker(int idx);

    int n_threads_ = 1;
    std::vector<std::thread> threads_;
    std::mutex call_mu_;  // one parallel_for at a time (callers from several threads queue)
    std::mutex mu_;
    std::condition_variable cv_work_, cv_done_;
    const std::function<void(int64_t, int64_t)>* job_ = nullptr;
    int64_t job_n_ = 0, job_grain_ = 1;
    uint64_t generation_ = 0;
    int pending_ = 0;
    bool stop_ = false;
};

// Runs fn inline when pool is null.
inline void parallel_for(ThreadPool* pool, int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1) {
    if (!pool || pool->n_threads() <= 1 || n <= grain) {
        if (n > 0) fn(0, n);
        return;
    }
    pool->parallel_for(n, fn, grain);
}

}  // namespace reprise::engine
