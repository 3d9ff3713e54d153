#include "cache/kv_event_publisher.h"

#include <chrono>
#include <exception>
#include <vector>

#include <msgpack.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace prefixd {

namespace {

constexpr int kPollMs = 5;  // the thread's longest sleep: the latency of a queued batch

std::string_view TypeName(KvEvent::Type t) {
  switch (t) {
    case KvEvent::Type::kStored: return "BlockStored";
    case KvEvent::Type::kRemoved: return "BlockRemoved";
    case KvEvent::Type::kCleared: return "AllBlocksCleared";
  }
  return "";
}

template <typename Packer>
void PackStr(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

template <typename Packer, typename T>
void PackArray(Packer& pk, const std::vector<T>& v) {
  pk.pack_array(static_cast<uint32_t>(v.size()));
  for (const T& x : v) pk.pack(x);
}

// The endpoint a replay socket binds by default: the port after `endpoint`'s.
std::string NextPortEndpoint(const std::string& endpoint) {
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos) return "";
  const std::string port = endpoint.substr(colon + 1);
  if (port == "*") return endpoint;
  int p = 0;
  if (!absl::SimpleAtoi(port, &p)) return "";
  return absl::StrCat(endpoint.substr(0, colon + 1), p + 1);
}

}  // namespace

std::string EncodeKvEventBatch(const KvEventBatch& batch, int data_parallel_rank) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_array(3);
  pk.pack_double(batch.ts);
  pk.pack_array(static_cast<uint32_t>(batch.events.size()));
  for (const KvEvent& e : batch.events) {
    switch (e.type) {
      case KvEvent::Type::kStored:
        pk.pack_array(8);
        PackStr(pk, TypeName(e.type));
        PackArray(pk, e.hashes);
        pk.pack(e.parent);
        PackArray(pk, e.token_ids);
        pk.pack(e.block_size);
        pk.pack_nil();  // lora_id
        PackStr(pk, MediumName(e.medium));
        pk.pack_nil();  // lora_name
        break;
      case KvEvent::Type::kRemoved:
        pk.pack_array(3);
        PackStr(pk, TypeName(e.type));
        PackArray(pk, e.hashes);
        PackStr(pk, MediumName(e.medium));
        break;
      case KvEvent::Type::kCleared:
        pk.pack_array(2);
        PackStr(pk, TypeName(e.type));
        PackStr(pk, MediumName(e.medium));
        break;
    }
  }
  pk.pack(data_parallel_rank);
  return std::string(buf.data(), buf.size());
}

StatusOr<KvEventBatch> DecodeKvEventBatch(std::string_view payload) {
  try {
    msgpack::object_handle oh = msgpack::unpack(payload.data(), payload.size());
    const msgpack::object& root = oh.get();
    if (root.type != msgpack::type::ARRAY || root.via.array.size < 2) {
      return absl::InvalidArgumentError("a KV event batch is an array [ts, events, dp_rank]");
    }
    KvEventBatch batch;
    batch.ts = root.via.array.ptr[0].as<double>();
    const msgpack::object& events = root.via.array.ptr[1];
    if (events.type != msgpack::type::ARRAY) {
      return absl::InvalidArgumentError("a KV event batch's events are not an array");
    }
    for (uint32_t i = 0; i < events.via.array.size; ++i) {
      const msgpack::object& ev = events.via.array.ptr[i];
      if (ev.type != msgpack::type::ARRAY || ev.via.array.size < 1) {
        return absl::InvalidArgumentError("a KV event is not a tagged array");
      }
      const msgpack::object* f = ev.via.array.ptr;
      const uint32_t n = ev.via.array.size;
      const std::string tag = f[0].as<std::string>();
      auto medium = [&](uint32_t at) {
        const std::string m = n > at && f[at].type == msgpack::type::STR ? f[at].as<std::string>()
                                                                          : "GPU";
        return m == "CPU"      ? KvMedium::kHost
               : m == "DISK"   ? KvMedium::kDisk
               : m == "REMOTE" ? KvMedium::kRemote
                               : KvMedium::kPool;
      };
      KvEvent e;
      if (tag == "BlockStored" && n >= 5) {
        e.type = KvEvent::Type::kStored;
        e.hashes = f[1].as<std::vector<uint64_t>>();
        e.parent = f[2].is_nil() ? 0 : f[2].as<uint64_t>();
        e.token_ids = f[3].as<std::vector<int32_t>>();
        e.block_size = f[4].as<int32_t>();
        e.medium = medium(6);
      } else if (tag == "BlockRemoved" && n >= 2) {
        e.type = KvEvent::Type::kRemoved;
        e.hashes = f[1].as<std::vector<uint64_t>>();
        e.medium = medium(2);
      } else if (tag == "AllBlocksCleared") {
        e.type = KvEvent::Type::kCleared;
        e.medium = medium(1);
      } else {
        return absl::InvalidArgumentError(absl::StrCat("unknown KV event '", tag, "'"));
      }
      batch.events.push_back(std::move(e));
    }
    return batch;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed KV event batch: ", e.what()));
  }
}

std::string SeqFrame(int64_t seq) {
  std::string out(8, '\0');
  const uint64_t u = static_cast<uint64_t>(seq);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((u >> (56 - 8 * i)) & 0xff);
  return out;
}

int64_t SeqOfFrame(std::string_view frame) {
  uint64_t u = 0;
  for (size_t i = 0; i < frame.size() && i < 8; ++i) {
    u = (u << 8) | static_cast<uint8_t>(frame[i]);
  }
  return static_cast<int64_t>(u);
}

struct KvEventPublisher::Sockets {
  zmq::context_t ctx{1};
  zmq::socket_t pub{ctx, zmq::socket_type::pub};
  zmq::socket_t replay{ctx, zmq::socket_type::router};
  std::deque<std::pair<int64_t, std::string>> ring;  // (seq, payload), oldest first
};

StatusOr<std::unique_ptr<KvEventPublisher>> KvEventPublisher::Create(
    const KvEventPublisherOptions& options) {
  auto sockets = std::make_unique<Sockets>();
  std::string replay = options.replay_endpoint.empty() ? NextPortEndpoint(options.endpoint)
                                                       : options.replay_endpoint;
  if (replay.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv-events ", options.endpoint,
        ": give --kv-events-replay, or an endpoint with a port (tcp://HOST:PORT)"));
  }
  const std::string* binding = &options.endpoint;
  try {
    sockets->pub.set(zmq::sockopt::sndhwm, 100000);
    sockets->pub.set(zmq::sockopt::linger, 200);
    sockets->pub.bind(options.endpoint);
    binding = &replay;
    sockets->replay.set(zmq::sockopt::linger, 0);
    sockets->replay.bind(replay);
  } catch (const zmq::error_t& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV events: cannot bind ", *binding, ": ", e.what()));
  }
  return std::unique_ptr<KvEventPublisher>(new KvEventPublisher(options, std::move(sockets)));
}

KvEventPublisher::KvEventPublisher(const KvEventPublisherOptions& options,
                                   std::unique_ptr<Sockets> sockets)
    : options_(options), log_(this, options.block_size), sockets_(std::move(sockets)) {
  endpoint_ = sockets_->pub.get(zmq::sockopt::last_endpoint);
  replay_endpoint_ = sockets_->replay.get(zmq::sockopt::last_endpoint);
  thread_ = std::thread([this] { Loop(); });
}

KvEventPublisher::~KvEventPublisher() {
  log_.Flush();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void KvEventPublisher::Publish(KvEventBatch batch) {
  std::lock_guard<std::mutex> lock(mu_);
  if (static_cast<int>(queue_.size()) >= options_.max_queue) {
    queue_.pop_front();
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }
  queue_.push_back(std::move(batch));
}

KvEventPublisherStats KvEventPublisher::stats() const {
  return KvEventPublisherStats{published_.load(std::memory_order_relaxed),
                               dropped_.load(std::memory_order_relaxed),
                               replay_requests_.load(std::memory_order_relaxed)};
}

void KvEventPublisher::Loop() {
  Sockets& s = *sockets_;
  const std::string topic = options_.topic;
  auto last_flush = std::chrono::steady_clock::now();
  while (true) {
    // Replay requests first: they are rare, and answering them is the subscriber's catch-up.
    zmq::pollitem_t items[] = {{s.replay.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 1, std::chrono::milliseconds(kPollMs));
      while (items[0].revents & ZMQ_POLLIN) {
        std::vector<zmq::message_t> req;
        if (!zmq::recv_multipart(s.replay, std::back_inserter(req), zmq::recv_flags::dontwait)) {
          break;
        }
        if (req.size() == 3) {
          const int64_t start = SeqOfFrame(req[2].to_string_view());
          const std::string id = req[0].to_string();
          for (const auto& [seq, payload] : s.ring) {
            if (seq < start) continue;
            s.replay.send(zmq::buffer(id), zmq::send_flags::sndmore);
            s.replay.send(zmq::str_buffer(""), zmq::send_flags::sndmore);
            s.replay.send(zmq::buffer(SeqFrame(seq)), zmq::send_flags::sndmore);
            s.replay.send(zmq::buffer(payload), zmq::send_flags::none);
          }
          s.replay.send(zmq::buffer(id), zmq::send_flags::sndmore);
          s.replay.send(zmq::str_buffer(""), zmq::send_flags::sndmore);
          s.replay.send(zmq::buffer(SeqFrame(-1)), zmq::send_flags::sndmore);
          s.replay.send(zmq::str_buffer(""), zmq::send_flags::none);
          replay_requests_.fetch_add(1, std::memory_order_relaxed);
        }
        zmq::poll(items, 1, std::chrono::milliseconds(0));
      }
    } catch (const zmq::error_t& e) {
      spdlog::warn("KV events: replay failed: {}", e.what());
    }

    const auto now = std::chrono::steady_clock::now();
    if (now - last_flush >= std::chrono::milliseconds(options_.idle_flush_ms)) {
      log_.Flush();  // what changed since the engine's last step
      last_flush = now;
    }
    std::deque<KvEventBatch> batches;
    bool stop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      batches.swap(queue_);
      stop = stop_;
    }
    for (const KvEventBatch& b : batches) {
      std::string payload = EncodeKvEventBatch(b, options_.data_parallel_rank);
      try {
        // PUB never blocks: past the high-water mark a subscriber's messages are dropped.
        s.pub.send(zmq::buffer(topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
        s.pub.send(zmq::buffer(SeqFrame(b.seq)), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
        s.pub.send(zmq::buffer(payload), zmq::send_flags::dontwait);
        published_.fetch_add(1, std::memory_order_relaxed);
      } catch (const zmq::error_t& e) {
        spdlog::warn("KV events: publish failed: {}", e.what());
      }
      s.ring.emplace_back(b.seq, std::move(payload));
      while (static_cast<int>(s.ring.size()) > options_.replay_batches) s.ring.pop_front();
    }
    if (stop) {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) break;
    }
  }
  s.pub.close();
  s.replay.close();
}

}  // namespace prefixd
