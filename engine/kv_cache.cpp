#include "engine/kv_cache.hpp"

#include <algorithm>
#include <cstring>

namespace reprise::engine {

namespace {

class HostKvStorage final : public KvStorage {
public:
    explicit HostKvStorage(size_t n) : data_(new float[n]) {}
    float* data() override { return data_.get(); }
    void copy(size_t dst, size_t src, size_t n) override { std::memcpy(data_.get() + dst, data_.get() + src, n * sizeof(float)); }
    bool on_host() const override { return true; }

private:
    std::unique_ptr<float[]> data_;
};

}  // namespace

std::unique_ptr<KvStorage> host_kv_storage(size_t n_floats) { return std::make_unique<HostKvStorage>(n_floats); }

KvBlockPool::KvBlockPool(int n_layer, int n_embd_kv, int block_size, int n_blocks, std::unique_ptr<KvStorage> storage)
    : n_layer_(n_layer), n_embd_kv_(n_embd_kv), block_size_(block_size),
      storage_(storage ? std::move(storage)
                       : host_kv_storage(size_t(n_blocks) * block_floats(n_layer, n_embd_kv, block_size))),
      data_(storage_->data()), refs_(size_t(n_blocks), 0), filled_(size_t(n_blocks), 0) {
    free_.reserve(size_t(n_blocks));
    for (int b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
}

double KvBlockPool::waste() const {
    const int64_t slots = int64_t(used_blocks()) * block_size_;
    return slots == 0 ? 0.0 : double(slots - filled_total_) / double(slots);
}

int KvBlockPool::allocate() {
    if (free_.empty()) return -1;
    const int b = free_.back();
    free_.pop_back();
    refs_[size_t(b)] = 1;
    return b;
}

void KvBlockPool::release(int block) {
    if (--refs_[size_t(block)] > 0) return;
    filled_total_ -= filled_[size_t(block)];
    filled_[size_t(block)] = 0;
    free_.push_back(block);
}

void KvBlockPool::set_filled(int block, int rows) {
    int& f = filled_[size_t(block)];
    filled_total_ += rows - f;
    f = rows;
}

void KvBlockPool::copy_block(int src, int dst) {
    storage_->copy(size_t(dst) * block_stride(), size_t(src) * block_stride(), block_stride());
    set_filled(dst, filled_[size_t(src)]);
}

KvSequence::KvSequence(KvSequence&& o) noexcept : pool_(o.pool_), blocks_(std::move(o.blocks_)), size_(o.size_) {
    o.blocks_.clear();
    o.size_ = 0;
}

KvSequence& KvSequence::operator=(KvSequence&& o) noexcept {
    if (this != &o) {
        clear();
        pool_ = o.pool_;
        blocks_ = std::move(o.blocks_);
        size_ = o.size_;
        o.blocks_.clear();
        o.size_ = 0;
    }
    return *this;
}

int KvSequence::blocks_needed(int pos0, int n) const {
    if (n <= 0) return 0;
    const int first = pos0 / bs(), last = (pos0 + n - 1) / bs();
    int need = 0;
    for (int b = first; b <= last; ++b)
        if (size_t(b) >= blocks_.size() || pool_->refs(blocks_[size_t(b)]) > 1) ++need;
    return need;
}

bool KvSequence::prepare(int pos0, int n) {
    if (n <= 0) return true;
    if (pos0 > int(blocks_.size()) * bs()) return false;  // a gap: positions are written in order
    if (blocks_needed(pos0, n) > pool_->free_blocks()) return false;
    const int first = pos0 / bs(), last = (pos0 + n - 1) / bs();
    for (int b = first; b <= last; ++b) {
        if (size_t(b) >= blocks_.size()) {
            blocks_.push_back(pool_->allocate());
        } else if (pool_->refs(blocks_[size_t(b)]) > 1) {
            const int copy = pool_->allocate();
            pool_->copy_block(blocks_[size_t(b)], copy);
            pool_->release(blocks_[size_t(b)]);
            blocks_[size_t(b)] = copy;
        }
    }
    return true;
}

void KvSequence::set_size(int n) {
    const int changed_from = std::min(size_, n) / bs();  // blocks before it are full and unchanged
    size_ = n;
    const size_t keep = size_t((n + bs() - 1) / bs());
    while (blocks_.size() > keep) {
        pool_->release(blocks_.back());
        blocks_.pop_back();
    }
    for (size_t b = size_t(changed_from); b < blocks_.size(); ++b)
        pool_->set_filled(blocks_[b], std::min(bs(), n - int(b) * bs()));
}

void KvSequence::fork_from(const KvSequence& src) {
    clear();
    pool_ = src.pool_;
    blocks_ = src.blocks_;
    for (int32_t b : blocks_) pool_->retain(b);
    size_ = src.size_;
}

void KvSequence::clear() {
    for (int32_t b : blocks_) pool_->release(b);
    blocks_.clear();
    size_ = 0;
}

KvCache::KvCache(int n_layer, int n_ctx, int n_embd_kv, int block_size, std::unique_ptr<KvStorage> storage)
    : n_ctx_(n_ctx), pool_(n_layer, n_embd_kv, block_size, (n_ctx + block_size - 1) / block_size, std::move(storage)),
      seq_(&pool_) {}

}  // namespace reprise::engine
