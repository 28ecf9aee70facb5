#include "transport/inproc_channel.h"

#include <condition_variable>
#include <deque>
#include <mutex>

namespace ra::transport {
namespace {

struct Message {
  MessageHeader header;
  std::vector<std::byte> payload;
};

// One direction: written by one end, read by the other.
struct Lane {
  std::deque<Message> queue;
  SteadyClock::time_point last_sign_of_life = SteadyClock::now();  // of the writing end
  bool writer_gone = false;
};

struct Shared {
  std::mutex mutex;
  std::condition_variable changed;
  Lane lanes[2];
};

class InprocChannel final : public Channel {
 public:
  InprocChannel(std::shared_ptr<Shared> shared, int side, std::string peer, std::chrono::milliseconds liveness)
      : shared_(std::move(shared)), side_(side), peer_(std::move(peer)), liveness_(liveness) {}

  ~InprocChannel() override {
    std::lock_guard lock(shared_->mutex);
    out().writer_gone = true;
    shared_->changed.notify_all();
  }

  const std::string& peer_name() const override { return peer_; }

  void send(uint32_t kind, uint64_t seq, std::span<const std::byte> payload, Deadline) override {
    std::lock_guard lock(shared_->mutex);
    if (in().writer_gone) throw PeerError(peer_ + " has closed its end of the channel");
    Message m{{kind, 0, seq, payload.size()}, {payload.begin(), payload.end()}};
    out().queue.push_back(std::move(m));
    out().last_sign_of_life = SteadyClock::now();
    shared_->changed.notify_all();
  }

  MessageHeader recv(std::vector<std::byte>& payload, Deadline deadline) override {
    std::unique_lock lock(shared_->mutex);
    for (;;) {
      if (pop(payload)) return last_;
      check_peer();
      const auto now = SteadyClock::now();
      if (now >= deadline) throw TimeoutError("timed out waiting for a message from " + peer_);
      const auto wake = std::min(deadline, in().last_sign_of_life + liveness_);
      shared_->changed.wait_until(lock, std::max(wake, now + std::chrono::milliseconds(1)));
    }
  }

  bool try_recv(MessageHeader& header, std::vector<std::byte>& payload) override {
    std::lock_guard lock(shared_->mutex);
    if (!pop(payload)) {
      check_peer();
      return false;
    }
    header = last_;
    return true;
  }

  void heartbeat() override {
    std::lock_guard lock(shared_->mutex);
    out().last_sign_of_life = SteadyClock::now();
  }

 private:
  Lane& out() { return shared_->lanes[side_]; }
  Lane& in() { return shared_->lanes[1 - side_]; }

  bool pop(std::vector<std::byte>& payload) {
    if (in().queue.empty()) return false;
    Message& m = in().queue.front();
    last_ = m.header;
    payload.assign(m.payload.begin(), m.payload.end());
    in().queue.pop_front();
    return true;
  }

  // Called with the lock held and the queue empty.
  void check_peer() {
    if (in().writer_gone) throw PeerError(peer_ + " has closed its end of the channel");
    const auto silent = SteadyClock::now() - in().last_sign_of_life;
    if (silent > liveness_) {
      throw PeerError(fmt::format("{} has been silent for {} ms (liveness timeout {} ms)", peer_,
                                  std::chrono::duration_cast<std::chrono::milliseconds>(silent).count(),
                                  liveness_.count()));
    }
  }

  std::shared_ptr<Shared> shared_;
  int side_;
  std::string peer_;
  std::chrono::milliseconds liveness_;
  MessageHeader last_;
};

}  // namespace

std::pair<std::unique_ptr<Channel>, std::unique_ptr<Channel>> make_inproc_pair(
    std::string name_a, std::string name_b, std::chrono::milliseconds liveness_timeout) {
  auto shared = std::make_shared<Shared>();
  auto a = std::make_unique<InprocChannel>(shared, 0, std::move(name_b), liveness_timeout);
  auto b = std::make_unique<InprocChannel>(shared, 1, std::move(name_a), liveness_timeout);
  return {std::move(a), std::move(b)};
}

}  // namespace ra::transport
