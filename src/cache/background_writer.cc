#include "cache/background_writer.h"

#include <algorithm>
#include <utility>

namespace prefixd {

namespace {
// Records per store Write: enough to amortize a disk folder fsync or a Redis round trip.
constexpr size_t kBatch = 16;

BackgroundWriter::Sink StoreSink(TierStore* store) {
  return [store](std::vector<PendingWrite>& job) {
    for (size_t i = 0; i < job.size(); i += kBatch) {
      std::vector<BlockRecord> batch;
      for (size_t k = i; k < job.size() && k < i + kBatch; ++k) {
        batch.push_back(std::move(job[k].record));
      }
      store->Write(std::move(batch));
    }
  };
}
}  // namespace

BackgroundWriter::BackgroundWriter(TierStore* store, int max_pending)
    : BackgroundWriter(StoreSink(store), max_pending) {}

BackgroundWriter::BackgroundWriter(Sink sink, int max_pending)
    : sink_(std::move(sink)), max_pending_(max_pending), thread_([this] { Loop(); }) {}

BackgroundWriter::~BackgroundWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void BackgroundWriter::Enqueue(std::vector<BlockRecord> records) {
  std::vector<PendingWrite> job(records.size());
  for (size_t i = 0; i < records.size(); ++i) job[i].record = std::move(records[i]);
  Enqueue(std::move(job));
}

void BackgroundWriter::Enqueue(std::vector<PendingWrite> job) {
  if (job.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t room = std::max<int64_t>(0, max_pending_ - queued_writes_);
    if (static_cast<int64_t>(job.size()) > room) {
      // The newest writes go: the queue keeps its order and the caller never waits.
      for (size_t i = room; i < job.size(); ++i) {
        if (job[i].source.valid()) released_.push_back(job[i].source);
      }
      dropped_.fetch_add(static_cast<int64_t>(job.size()) - room, std::memory_order_relaxed);
      job.resize(room);
    }
    if (!job.empty()) {
      queued_.fetch_add(static_cast<int64_t>(job.size()), std::memory_order_relaxed);
      queued_writes_ += static_cast<int64_t>(job.size());
      queue_.push_back(std::move(job));
    }
    pending_.store(queued_writes_ + in_flight_, std::memory_order_relaxed);
  }
  cv_.notify_one();
}

void BackgroundWriter::Loop() {
  while (true) {
    std::vector<PendingWrite> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty() && stop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      in_flight_ = static_cast<int64_t>(job.size());
      queued_writes_ -= in_flight_;
    }
    std::vector<BlockId> sources;
    for (const PendingWrite& w : job) {
      if (w.source.valid()) sources.push_back(w.source);
    }
    sink_(job);
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_.insert(released_.end(), sources.begin(), sources.end());
      busy_ = false;
      in_flight_ = 0;
      pending_.store(queued_writes_, std::memory_order_relaxed);
    }
    idle_cv_.notify_all();
  }
}

void BackgroundWriter::TakeReleased(std::vector<BlockId>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  out->insert(out->end(), released_.begin(), released_.end());
  released_.clear();
}

void BackgroundWriter::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

bool BackgroundWriter::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.empty() && !busy_;
}

}  // namespace prefixd
