#include "cache/background_writer.h"

namespace prefixd {

namespace {
// Records per store Write: enough to amortize a disk folder fsync or a Redis round trip.
constexpr size_t kBatch = 16;
}  // namespace

BackgroundWriter::BackgroundWriter(TierStore* store, int max_pending)
    : store_(store), max_pending_(max_pending), thread_([this] { Loop(); }) {}

BackgroundWriter::~BackgroundWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void BackgroundWriter::Enqueue(std::vector<BlockRecord> records) {
  if (records.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : records) {
      if (static_cast<int>(queue_.size()) >= max_pending_) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      queue_.push_back(std::move(r));
      queued_.fetch_add(1, std::memory_order_relaxed);
    }
    pending_.store(static_cast<int64_t>(queue_.size()) + in_flight_, std::memory_order_relaxed);
  }
  cv_.notify_one();
}

void BackgroundWriter::Loop() {
  while (true) {
    std::vector<BlockRecord> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty() && stop_) return;
      while (!queue_.empty() && batch.size() < kBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      writing_ = true;
      in_flight_ = static_cast<int64_t>(batch.size());
    }
    store_->Write(std::move(batch));
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      in_flight_ = 0;
      pending_.store(static_cast<int64_t>(queue_.size()), std::memory_order_relaxed);
    }
    idle_cv_.notify_all();
  }
}

void BackgroundWriter::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return queue_.empty() && !writing_; });
}

}  // namespace prefixd
