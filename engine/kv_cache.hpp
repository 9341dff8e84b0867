#pragma once
// Paged KV cache (DESIGN.md section 6), as vLLM's PagedAttention: K and V rows live in
// fixed-size blocks of a shared pool; a sequence is a block table. Blocks carry a
// reference count, so the n samples of one prompt fork from the prompt's sequence and
// share its blocks; a sample that writes into a block someone else still holds copies
// it first (copy-on-write). Only the prompt's partly filled last block is ever copied:
// full blocks are never written again.
//
// Why blocks rather than one contiguous array per sequence: memory is taken as a
// sequence grows (a block at a time, so at most block_size - 1 slots of it are idle),
// never reserved for a maximum length that most generations do not reach, and
// sharing is a reference count instead of a copy. The price is one indirection per
// block in attention (kernels/attention reads through the block table).
//
// Layout: block b holds, per layer, block_size K rows then block_size V rows of
// n_embd_kv floats each, so a block (all layers) is one contiguous span for the copy
// and a layer's rows of a block are contiguous for attention. F32: the CPU kernels'
// reference precision.
//
// Not thread-safe: one scheduler thread owns the pool and its sequences.
//
// Where the floats live is a KvStorage: host memory for the CPU path, device memory
// for the CUDA path (engine/cuda). The block bookkeeping (tables, reference counts,
// copy-on-write decisions) is the same host code for both; only the bytes move.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace reprise::engine {

// The memory behind a pool: n floats, and a copy within them (copy-on-write).
class KvStorage {
public:
    virtual ~KvStorage() = default;
    virtual float* data() = 0;
    // Copies n floats from offset src to offset dst (ranges do not overlap).
    virtual void copy(size_t dst, size_t src, size_t n) = 0;
    // False for device memory: the pool's pointers are then the device's, and only
    // that device's kernels may dereference them.
    virtual bool on_host() const = 0;
};

// Host memory, uninitialised on purpose: the pool is sized for the configured memory,
// and pages the engine never touches are never backed by RAM.
std::unique_ptr<KvStorage> host_kv_storage(size_t n_floats);

class KvBlockPool {
public:
    // storage: n_blocks * block_floats() floats; null = host memory.
    KvBlockPool(int n_layer, int n_embd_kv, int block_size, int n_blocks, std::unique_ptr<KvStorage> storage = nullptr);
    // Floats of one block (all layers, K and V).
    static size_t block_floats(int n_layer, int n_embd_kv, int block_size) {
        return size_t(n_layer) * 2 * size_t(block_size) * size_t(n_embd_kv);
    }

    int n_layer() const { return n_layer_; }
    int n_embd_kv() const { return n_embd_kv_; }
    int block_size() const { return block_size_; }
    int n_blocks() const { return int(refs_.size()); }
    int free_blocks() const { return int(free_.size()); }
    int used_blocks() const { return n_blocks() - free_blocks(); }
    // K and V of one token over all layers.
    size_t bytes_per_token() const { return size_t(2) * n_layer_ * n_embd_kv_ * sizeof(float); }
    size_t bytes_per_block() const { return bytes_per_token() * block_size_; }
    // Slots (token positions) written in used blocks; used_blocks * block_size minus
    // this is the internal fragmentation (the idle tail of each sequence's last block).
    int64_t filled_slots() const { return filled_total_; }
    // Idle slots / allocated slots, 0 when nothing is allocated.
    double waste() const;

    // A free block with reference count 1, or -1 when none is left.
    int allocate();
    void retain(int block) { ++refs_[size_t(block)]; }
    void release(int block);
    int refs(int block) const { return refs_[size_t(block)]; }
    // Records that rows [0, rows) of `block` hold data (for the waste figure).
    void set_filled(int block, int rows);
    // Copies every layer's rows of `src` into `dst` (copy-on-write).
    void copy_block(int src, int dst);

    float* k(int block, int layer, int row) { return data_ + offset(block, layer, row, 0); }
    float* v(int block, int layer, int row) { return data_ + offset(block, layer, row, 1); }
    const float* data() const { return data_; }
    bool on_host() const { return storage_->on_host(); }
    // Floats from one block to the next, and from a block's start to layer l's K (V) rows.
    size_t block_stride() const { return size_t(n_layer_) * 2 * block_size_ * n_embd_kv_; }
    size_t k_offset(int layer) const { return offset(0, layer, 0, 0); }
    size_t v_offset(int layer) const { return offset(0, layer, 0, 1); }

private:
    size_t offset(int block, int layer, int row, int kv) const {
        return size_t(block) * block_stride() + (size_t(layer) * 2 + size_t(kv)) * block_size_ * n_embd_kv_ +
               size_t(row) * n_embd_kv_;
    }

    int n_layer_, n_embd_kv_, block_size_;
    std::unique_ptr<KvStorage> storage_;
    float* data_;  // storage_->data()
    std::vector<int> refs_;
    std::vector<int> filled_;
    std::vector<int> free_;  // a stack: recently freed blocks are reused first (warm in cache)
    int64_t filled_total_ = 0;
};

// One sequence's block table. Positions [0, size()) hold valid K/V; the caller makes
// room with prepare() before a forward pass writes positions, and records what was
// written with set_size().
class KvSequence {
public:
    explicit KvSequence(KvBlockPool* pool) : pool_(pool) {}
    ~KvSequence() { clear(); }
    KvSequence(KvSequence&& o) noexcept;
    KvSequence& operator=(KvSequence&& o) noexcept;
    KvSequence(const KvSequence&) = delete;
    KvSequence& operator=(const KvSequence&) = delete;

    KvBlockPool* pool() const { return pool_; }
    int size() const { return size_; }
    const std::vector<int32_t>& blocks() const { return blocks_; }

    // New blocks that prepare(pos0, n) would take: missing blocks plus shared blocks
    // to copy. The scheduler sums these to decide what fits before it commits.
    int blocks_needed(int pos0, int n) const;
    // Makes positions [pos0, pos0 + n) writable: allocates missing blocks and copies
    // shared ones. All or nothing: false (and no change) when the pool is short.
    bool prepare(int pos0, int n);
    // Positions [0, n) are valid from now on. Shrinking releases the blocks past the
    // new end (speculative decoding rolls back rejected drafts this way).
    void set_size(int n);
    // Shares every block of `src` (which keeps them too): the fork of n samples.
    void fork_from(const KvSequence& src);
    void clear();

    float* k_row(int layer, int pos) { return pool_->k(blocks_[size_t(pos / bs())], layer, pos % bs()); }
    float* v_row(int layer, int pos) { return pool_->v(blocks_[size_t(pos / bs())], layer, pos % bs()); }

private:
    int bs() const { return pool_->block_size(); }
    KvBlockPool* pool_;
    std::vector<int32_t> blocks_;
    int size_ = 0;
};

// A sequence with a pool of its own, sized for n_ctx positions: the single-sequence
// convenience that tools and tests use (Model::forward(KvCache&, ...)).
class KvCache {
public:
    KvCache(int n_layer, int n_ctx, int n_embd_kv, int block_size = 16, std::unique_ptr<KvStorage> storage = nullptr);
    int n_ctx() const { return n_ctx_; }
    KvSequence& sequence() { return seq_; }
    size_t bytes() const { return size_t(pool_.n_blocks()) * pool_.bytes_per_block(); }

private:
    int n_ctx_;
    KvBlockPool pool_;
    KvSequence seq_;
};

}  // namespace reprise::engine
