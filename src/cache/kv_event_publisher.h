// KvEventPublisher: the transport of KV events (kv_events.h): ZMQ (cppzmq) and msgpack
// (msgpack-c), in the layout vLLM's ZmqEventPublisher uses, so that the subscribers llm-d and
// NVIDIA Dynamo ship can read prefixd (`prefixd serve --kv-events tcp://127.0.0.1:5557`).
//
//   PUB socket (bound):     multipart [topic, seq (8 bytes, big-endian), payload]
//   payload (msgpack):      [ts, [event, ...], data_parallel_rank]
//     ["BlockStored", [hash, ...], parent_hash, [token_id, ...], block_size, lora_id (nil),
//      medium, lora_name (nil)]
//     ["BlockRemoved", [hash, ...], medium]
//     ["AllBlocksCleared", medium]
//   ROUTER socket (bound):  replay. A DEALER sends ["", start seq (8 bytes, big-endian)] and
//     gets one ["", seq, payload] per batch still in the ring from start on, then the end
//     marker ["", -1 (8 bytes), ""].
//
// The engine thread never waits: Publish appends to a bounded queue (full: the oldest batch is
// dropped and counted; its sequence number then never arrives, not even by replay, so a
// subscriber that sees the gap and cannot fill it knows to rebuild its view). A thread of the
// publisher encodes, sends (a slow subscriber loses messages at the PUB socket's high-water
// mark, never blocks it), keeps the last `replay_batches` encoded batches for replay, answers
// replay requests, and flushes the log every `idle_flush_ms` (so that what changed while the
// engine was idle, such as a disk write that finished, goes out without waiting for a step).
//
// Thread safety: Publish, stats() and log() from any thread; the sockets belong to the
// publisher's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "base/status.h"
#include "cache/kv_events.h"

namespace prefixd {

struct KvEventPublisherOptions {
  // The PUB socket's endpoint, bound (tcp://HOST:PORT; PORT may be * for any free port).
  std::string endpoint;
  // The replay ROUTER socket's endpoint, bound. Empty: the endpoint's port + 1 (a tcp
  // endpoint with a port number), or any free port (port *).
  std::string replay_endpoint;
  std::string topic;           // the first frame of each message ("" like vLLM's default)
  int block_size = 16;         // for the log's stored events
  int data_parallel_rank = 0;  // the third field of each batch
  int max_queue = 1024;        // batches waiting for the publisher's thread
  int replay_batches = 10000;  // the replay ring
  int idle_flush_ms = 20;      // how often the thread flushes the log itself
};

struct KvEventPublisherStats {
  int64_t published = 0;        // batches sent on the PUB socket
  int64_t dropped = 0;          // batches dropped because the queue was full
  int64_t replay_requests = 0;  // replay requests answered
};

// The payload of one batch, and back (tests, and a C++ router's starting point).
std::string EncodeKvEventBatch(const KvEventBatch& batch, int data_parallel_rank);
StatusOr<KvEventBatch> DecodeKvEventBatch(std::string_view payload);
// An 8-byte big-endian sequence number frame, and back.
std::string SeqFrame(int64_t seq);
int64_t SeqOfFrame(std::string_view frame);

class KvEventPublisher final : public KvEventSink {
 public:
  // Binds both sockets and starts the thread. Fails (with the endpoint and ZMQ's reason) when
  // an endpoint is malformed or in use.
  static StatusOr<std::unique_ptr<KvEventPublisher>> Create(const KvEventPublisherOptions& options);
  // Flushes the log, sends what is queued, closes the sockets.
  ~KvEventPublisher() override;

  void Publish(KvEventBatch batch) override;

  // The log whose batches this publisher sends: give it to the cache (PrefixCacheOptions).
  KvEventLog* log() { return &log_; }
  // The endpoints as bound (a * port resolved).
  const std::string& endpoint() const { return endpoint_; }
  const std::string& replay_endpoint() const { return replay_endpoint_; }
  KvEventPublisherStats stats() const;

 private:
  struct Sockets;
  KvEventPublisher(const KvEventPublisherOptions& options, std::unique_ptr<Sockets> sockets);
  void Loop();

  const KvEventPublisherOptions options_;
  KvEventLog log_;
  std::unique_ptr<Sockets> sockets_;  // the publisher thread's
  std::string endpoint_, replay_endpoint_;

  std::mutex mu_;
  std::deque<KvEventBatch> queue_;  // guarded by mu_
  bool stop_ = false;               // guarded by mu_
  std::atomic<int64_t> published_{0}, dropped_{0}, replay_requests_{0};
  std::thread thread_;
};

}  // namespace prefixd
