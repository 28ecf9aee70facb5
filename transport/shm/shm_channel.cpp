#include "transport/shm/shm_channel.h"

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

#include "transport/cpu_relax.h"
#include "transport/shm/futex.h"
#include "transport/shm/shm_ring.h"

namespace ra::transport {
namespace {

namespace bip = boost::interprocess;
using shm::kCacheLine;
using shm::RingControl;
using std::chrono::milliseconds;

constexpr uint64_t kSegmentMagic = 0x3147534D48534152ull;  // "RASHMSG1" in little-endian bytes
constexpr uint32_t kSegmentVersion = 2;  // 2: the bells (blocking waits)
constexpr uint64_t kMinRingBytes = uint64_t{4} << 10;
constexpr uint64_t kMaxRingBytes = uint64_t{1} << 30;
constexpr std::size_t kMaxNameChars = 200;          // NAME_MAX is 255; leave room for tools' suffixes
constexpr uint64_t kMaxMessageBytes = uint64_t{1} << 40;  // a larger header is a corrupt stream
constexpr uint64_t kHeaderBytes = sizeof(MessageHeader);

// Wait phases (see shm_channel.h). The spin catches a peer that answers within microseconds without a
// system call; past it the waiter blocks on a futex, so a late answer costs one wake-up (a few µs), not a
// sleep quantum, and the core is free for the peer meanwhile. The block is sliced so that the deadline
// and the peer's liveness are still checked every kBlockSlice.
constexpr auto kDefaultSpinBudget = std::chrono::microseconds(50);
constexpr int kSpinTurnsPerClockRead = 64;  // a pause is 10-140 cycles: a clock read every ~1-4 µs
constexpr auto kBlockSlice = milliseconds(1);
constexpr auto kProcessCheckPeriod = milliseconds(1);
constexpr auto kOpenPollPeriod = milliseconds(1);

constexpr int kCreator = 0;  // side index of the retriever, which creates the segment
constexpr int kOpener = 1;   // side index of the worker, which opens it

// The spin budget of one side: RA_SHM_SPIN_US_RETRIEVER (the creator's) or RA_SHM_SPIN_US_WORKER (the
// opener's), else RA_SHM_SPIN_US, else kDefaultSpinBudget; 0 to 10^6 µs, read once per process. The two
// sides may want different budgets: a retriever waiting for its next kStep spins on its own pinned core,
// while the worker's spin during a search can take a core from the search (docs/perf.md, eleventh round:
// a longer spin on both sides was slower).
std::chrono::microseconds read_spin_budget(const char* name, std::chrono::microseconds fallback) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return fallback;
  char* end = nullptr;
  const long long us = std::strtoll(env, &end, 10);
  RA_REQUIRE(*end == '\0' && us >= 0 && us <= 1000000, "{} must be 0 to 1000000 microseconds (got '{}')", name, env);
  return std::chrono::microseconds(us);
}

std::chrono::microseconds spin_budget(int side) {
  static const std::chrono::microseconds both = read_spin_budget("RA_SHM_SPIN_US", kDefaultSpinBudget);
  static const std::chrono::microseconds creator = read_spin_budget("RA_SHM_SPIN_US_RETRIEVER", both);
  static const std::chrono::microseconds opener = read_spin_budget("RA_SHM_SPIN_US_WORKER", both);
  return side == kCreator ? creator : opener;
}

enum SegmentState : uint32_t {
  kCreating = 0,  // zero-filled by ftruncate; the creator is still initialising
  kReady = 1,     // initialised; waiting for an opener
  kClaimed = 2,   // an opener won the claim and is writing its pid
  kAttached = 3,  // both sides present; the name may be unlinked
};

struct alignas(kCacheLine) SegmentHeader {
  uint64_t magic = 0;          // kSegmentMagic
  uint32_t version = 0;        // kSegmentVersion
  uint32_t control_bytes = 0;  // sizeof(SegmentControl) on the creator: catches ABI differences
  uint64_t ring_bytes = 0;     // bytes per direction, a power of two
  std::atomic<uint32_t> state{kCreating};  // SegmentState; magic..ring_bytes are valid once != kCreating
};

struct alignas(kCacheLine) SideState {
  std::atomic<uint64_t> heartbeat{0};  // incremented by heartbeat()
  std::atomic<int32_t> pid{0};         // the side's process; 0 until it attaches
  std::atomic<uint32_t> closed{0};     // 1 once the side's Channel is destroyed
};

// A blocked waiter's doorbell (futex.h). The waiter sets `sleeping`, rechecks its condition and sleeps
// while `rings` is unchanged; the other side, after publishing a ring position, rings (bumps `rings`
// and wakes) only when `sleeping` is set, so its fast path makes no system call. Each side has a
// seq_cst fence between its store and its load, so one of them sees the other: the waiter sees the new
// position, or the publisher sees the sleeper.
struct alignas(kCacheLine) Bell {
  std::atomic<uint32_t> rings{0};     // the futex word
  std::atomic<uint32_t> sleeping{0};  // 1 while a waiter is (about to be) blocked on rings
};
enum BellKind { kDataBell = 0, kSpaceBell = 1 };

struct SegmentControl {
  SegmentHeader header;
  SideState sides[2];     // [kCreator], [kOpener]
  RingControl rings[2];   // ring i is written by side i
  Bell bells[2][2];       // [ring i][kDataBell]: its reader waits for data; [kSpaceBell]: its writer for space
};
static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<int32_t>::is_always_lock_free);
static_assert(sizeof(SegmentControl) % kCacheLine == 0);

uint64_t segment_bytes(uint64_t ring_bytes) { return sizeof(SegmentControl) + 2 * ring_bytes; }

SegmentControl* control_of(const bip::mapped_region& region) {
  return static_cast<SegmentControl*>(region.get_address());
}

std::byte* ring_data(const bip::mapped_region& region, int side, uint64_t ring_bytes) {
  return static_cast<std::byte*>(region.get_address()) + sizeof(SegmentControl) + side * ring_bytes;
}

long long to_ms(SteadyClock::duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }

bool process_gone(pid_t pid) { return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH; }

// Watches one peer process for exit. A pidfd names the process itself (immune to pid reuse) and becomes
// readable when it exits, even while it is an unreaped zombie of ours, which kill(pid, 0) still finds.
class PeerProcess {
 public:
  PeerProcess() = default;
  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;
  ~PeerProcess() {
    if (pidfd_ >= 0) ::close(pidfd_);
  }

  void watch(pid_t pid) {
    pid_ = pid;
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    gone_ = pidfd_ < 0 && errno == ESRCH;  // other failures (old kernel): fall back to kill()
  }

  pid_t pid() const { return pid_; }

  bool exited() const {
    if (gone_) return true;
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};
      return ::poll(&p, 1, 0) > 0;
    }
    return process_gone(pid_);
  }

 private:
  pid_t pid_ = 0;
  int pidfd_ = -1;
  bool gone_ = false;
};

class ShmChannel final : public Channel {
 public:
  ShmChannel(bip::mapped_region region, int side, const ShmChannelOptions& options, std::string peer)
      : region_(std::move(region)),
        control_(control_of(region_)),
        side_(side),
        name_(options.segment_name),
        peer_(std::move(peer)),
        liveness_(options.liveness_timeout),
        own_(&control_->sides[side]),
        peer_side_(&control_->sides[1 - side]),
        data_in_(control_->bells[1 - side][kDataBell]),
        space_out_(control_->bells[side][kSpaceBell]),
        data_out_(control_->bells[side][kDataBell]),
        space_in_(control_->bells[1 - side][kSpaceBell]) {
    const uint64_t ring_bytes = control_->header.ring_bytes;
    out_ = shm::RingWriter(&control_->rings[side], ring_data(region_, side, ring_bytes), ring_bytes);
    in_ = shm::RingReader(&control_->rings[1 - side], ring_data(region_, 1 - side, ring_bytes), ring_bytes);
    if (side == kOpener) start_watching_peer();  // the creator is there by construction
  }

  ~ShmChannel() override {
    own_->closed.store(1, std::memory_order_release);
    // A peer blocked on us learns of the close now, not at its next slice.
    for (Bell* bell : {&data_out_, &space_in_}) {
      bell->rings.fetch_add(1, std::memory_order_release);
      shm::futex_wake_all(bell->rings);
    }
    if (side_ == kCreator && !unlinked_) remove_shm_segment(name_);
  }

  const std::string& peer_name() const override { return peer_; }

  void send(uint32_t kind, uint64_t seq, std::span<const std::byte> payload, Deadline deadline) override {
    check_usable();
    first_wait_ = {};
    if (peer_attached() && peer_side_->closed.load(std::memory_order_acquire) != 0) fail(closed_message());
    if (out_.free_bytes(kHeaderBytes) < kHeaderBytes) {
      wait_until([&] { return out_.free_bytes(kHeaderBytes) >= kHeaderBytes; }, space_out_, deadline,
                 "ring space (it is not reading)");
    }
    const MessageHeader header{kind, 0, seq, payload.size()};
    out_.put(&header, kHeaderBytes);  // whole, so a reader that sees 24 bytes has a header
    mid_message_ = true;
    const uint64_t max_chunk = out_.capacity() / 4;  // publish often enough for the reader to overlap
    uint64_t done = 0;
    while (done < payload.size()) {
      const uint64_t want = std::min<uint64_t>(payload.size() - done, max_chunk);
      const uint64_t free = out_.free_bytes(want);
      if (free == 0) {
        publish_out();
        wait_until([&] { return out_.free_bytes(want) > 0; }, space_out_, deadline, "ring space (it is not reading)");
        continue;
      }
      const uint64_t n = std::min(free, want);
      out_.put(payload.data() + done, n);
      done += n;
      publish_out();
    }
    if (payload.empty()) publish_out();
    mid_message_ = false;
  }

  MessageHeader recv(std::vector<std::byte>& payload, Deadline deadline) override {
    check_usable();
    first_wait_ = {};
    if (in_.available(kHeaderBytes) < kHeaderBytes) {
      wait_until([&] { return in_.available(kHeaderBytes) >= kHeaderBytes; }, data_in_, deadline, "a message");
    }
    return read_message(payload, deadline);
  }

  // Once a header is visible the sender is inside send(), so the rest follows at memory speed (or the
  // sender fails its liveness check): committing to the message is what lets a try_recv poller take
  // messages larger than the ring.
  bool try_recv(MessageHeader& header, std::vector<std::byte>& payload) override {
    check_usable();
    if (in_.available(kHeaderBytes) < kHeaderBytes) {
      std::optional<std::string> failure = peer_failure(SteadyClock::now());
      if (in_.available(kHeaderBytes) < kHeaderBytes) {
        if (failure) fail(std::move(*failure));
        return false;
      }
    }
    first_wait_ = {};
    header = read_message(payload, kNoDeadline);
    return true;
  }

  void heartbeat() override { own_->heartbeat.fetch_add(1, std::memory_order_relaxed); }

 private:
  MessageHeader read_message(std::vector<std::byte>& payload, Deadline deadline) {
    MessageHeader header;
    in_.get(&header, kHeaderBytes);
    mid_message_ = true;
    if (header.reserved != 0 || header.bytes > kMaxMessageBytes) {
      fail(fmt::format("{} sent a malformed message header (kind {}, reserved {}, {} bytes) on shared-memory "
                       "segment '{}': the stream is corrupt",
                       peer_, header.kind, header.reserved, header.bytes, name_));
    }
    payload.resize(header.bytes);  // keeps the capacity: no allocation for a same-or-smaller message
    const uint64_t max_chunk = in_.capacity() / 4;  // release space in pieces the writer can refill
    uint64_t done = 0;
    while (done < header.bytes) {
      const uint64_t want = std::min(header.bytes - done, max_chunk);
      const uint64_t avail = in_.available(want);
      if (avail == 0) {
        publish_in();
        wait_until([&] { return in_.available(want) > 0; }, data_in_, deadline, "the rest of a message");
        continue;
      }
      const uint64_t n = std::min(avail, want);
      in_.get(payload.data() + done, n);
      done += n;
      publish_in();
    }
    if (header.bytes == 0) publish_in();
    mid_message_ = false;
    return header;
  }

  // Publishing a ring position, then ringing the peer's bell if it sleeps on it (see Bell).
  void publish_out() {
    out_.publish();
    ring(data_out_);
  }
  void publish_in() {
    in_.publish();
    ring(space_in_);
  }
  static void ring(Bell& bell) {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // the position store before the sleeper load
    if (bell.sleeping.load(std::memory_order_relaxed) != 0) {
      bell.rings.fetch_add(1, std::memory_order_release);
      shm::futex_wake_all(bell.rings);
    }
  }

  // Spin for spin_budget(side_), then block on `bell` (which the peer rings when it moves what ready() looks
  // at) in slices, until ready(). Outside the spin, checks the deadline and the peer; a failure is
  // thrown only after one last look at ready(), so what a peer sent before it closed or exited is still
  // delivered.
  template <typename Ready>
  void wait_until(Ready ready, Bell& bell, Deadline deadline, const char* what) {
    if (first_wait_ == SteadyClock::time_point{}) first_wait_ = SteadyClock::now();  // for "timed out after"
    const auto spin_end = SteadyClock::now() + spin_budget(side_);
    for (int turn = 1;; ++turn) {
      if (ready()) return;
      cpu_relax();
      if (turn % kSpinTurnsPerClockRead == 0) {
        const auto now = SteadyClock::now();
        if (now >= spin_end || now >= deadline) break;
      }
    }
    for (;;) {
      if (ready()) return;
      const auto now = SteadyClock::now();
      std::optional<std::string> failure = peer_failure(now);
      if (!failure && now >= deadline) {
        failure = fmt::format("{}: timed out after {} ms waiting for {}{}", peer_, to_ms(now - first_wait_), what,
                              peer_attached_ ? "" : fmt::format(" (it has not attached to shared-memory "
                                                                "segment '{}' yet)", name_));
      }
      if (failure) {
        if (ready()) return;
        fail(std::move(*failure));
      }
      const uint32_t seen = bell.rings.load(std::memory_order_acquire);
      bell.sleeping.store(1, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_seq_cst);  // the sleeper store before the position load
      if (!ready()) {
        const auto slice = std::min<SteadyClock::duration>(kBlockSlice, deadline - now);
        shm::futex_wait(bell.rings, seen, std::chrono::duration_cast<std::chrono::nanoseconds>(slice));
      }
      bell.sleeping.store(0, std::memory_order_relaxed);
    }
  }

  // Why the peer must be given up on, or nothing. Only after it has attached: before, only deadlines apply.
  std::optional<std::string> peer_failure(SteadyClock::time_point now) {
    if (!peer_attached()) return std::nullopt;
    if (peer_side_->closed.load(std::memory_order_acquire) != 0) return closed_message();
    const uint64_t beats = peer_side_->heartbeat.load(std::memory_order_relaxed);
    const uint64_t writes = control_->rings[1 - side_].head.load(std::memory_order_relaxed);
    const uint64_t reads = control_->rings[side_].tail.load(std::memory_order_relaxed);
    if (beats != seen_beats_ || writes != seen_writes_ || reads != seen_reads_) {
      seen_beats_ = beats;
      seen_writes_ = writes;
      seen_reads_ = reads;
      last_progress_ = now;
    }
    if (now >= next_process_check_) {
      next_process_check_ = now + kProcessCheckPeriod;
      if (peer_process_.exited()) return fmt::format("{} (pid {}) exited", peer_, peer_process_.pid());
    }
    if (now - last_progress_ > liveness_) {
      return fmt::format("{} (pid {}) has been silent for {} ms (liveness timeout {} ms): no heartbeat and no "
                         "ring progress; is it stopped or hung?",
                         peer_, peer_process_.pid(), to_ms(now - last_progress_), liveness_.count());
    }
    return std::nullopt;
  }

  // The creator learns of the opener lazily, on its next call: one acquire load until then.
  bool peer_attached() {
    if (peer_attached_) return true;
    if (control_->header.state.load(std::memory_order_acquire) != kAttached) return false;
    remove_shm_segment(name_);  // the opener did too; this covers an opener killed right after attaching
    unlinked_ = true;
    start_watching_peer();
    return true;
  }

  void start_watching_peer() {
    const int32_t pid = peer_side_->pid.load(std::memory_order_relaxed);
    RA_REQUIRE(pid > 0, "shared-memory segment '{}' is corrupt: peer pid {}", name_, pid);
    peer_process_.watch(pid);
    seen_beats_ = peer_side_->heartbeat.load(std::memory_order_relaxed);
    seen_writes_ = control_->rings[1 - side_].head.load(std::memory_order_relaxed);
    seen_reads_ = control_->rings[side_].tail.load(std::memory_order_relaxed);
    last_progress_ = next_process_check_ = SteadyClock::now();
    peer_attached_ = true;
  }

  std::string closed_message() const {
    return fmt::format("{} closed the channel (shared-memory segment '{}')", peer_, name_);
  }

  // A failure inside a message leaves the stream out of step, so the channel refuses further use.
  [[noreturn]] void fail(std::string message) {
    if (mid_message_) broken_ = message;
    throw PeerError(std::move(message));
  }

  void check_usable() const {
    if (!broken_.empty()) {
      throw PeerError(fmt::format("channel to {} is unusable: an earlier error interrupted a message: {}", peer_,
                                  broken_));
    }
  }

  bip::mapped_region region_;  // the whole segment: segment_bytes(ring_bytes) bytes
  SegmentControl* control_;
  int side_;  // kCreator or kOpener
  std::string name_;
  std::string peer_;
  milliseconds liveness_;
  SideState* own_;
  SideState* peer_side_;
  Bell& data_in_;    // we block here for the peer's writes into our inbound ring
  Bell& space_out_;  // we block here for the peer's reads from our outbound ring
  Bell& data_out_;   // the peer blocks here for our writes
  Bell& space_in_;   // the peer blocks here for our reads
  shm::RingWriter out_;  // ring side_
  shm::RingReader in_;   // ring 1 - side_
  bool peer_attached_ = false;
  bool unlinked_ = false;
  bool mid_message_ = false;
  SteadyClock::time_point first_wait_{};  // when the current send/recv first had to wait
  std::string broken_;  // why a message was interrupted; non-empty makes every call throw

  // Liveness watch: the peer's counters as last seen, and when they last moved.
  PeerProcess peer_process_;
  uint64_t seen_beats_ = 0;
  uint64_t seen_writes_ = 0;
  uint64_t seen_reads_ = 0;
  SteadyClock::time_point last_progress_{};
  SteadyClock::time_point next_process_check_{};
};

void validate_common(const ShmChannelOptions& options) {
  const std::string& name = options.segment_name;
  RA_REQUIRE(!name.empty(), "shm channel: segment_name is empty (expected e.g. \"ra-<job>-r<rank>\")");
  RA_REQUIRE(name.size() <= kMaxNameChars, "shm channel: segment_name '{}' is {} characters; at most {} allowed",
             name, name.size(), kMaxNameChars);
  RA_REQUIRE(name.find('/') == std::string::npos && name != "." && name != "..",
             "shm channel: segment_name '{}' must be a plain file name in /dev/shm (no '/')", name);
  RA_REQUIRE(options.liveness_timeout.count() > 0, "shm channel '{}': liveness_timeout must be positive, got {} ms",
             name, options.liveness_timeout.count());
}

void validate_ring_bytes(const std::string& name, uint64_t ring_bytes) {
  RA_REQUIRE(ring_bytes >= kMinRingBytes, "shm channel '{}': ring_bytes {} is too small; need at least {}", name,
             ring_bytes, kMinRingBytes);
  RA_REQUIRE(ring_bytes <= kMaxRingBytes, "shm channel '{}': ring_bytes {} is too large; at most {}", name,
             ring_bytes, kMaxRingBytes);
  RA_REQUIRE((ring_bytes & (ring_bytes - 1)) == 0, "shm channel '{}': ring_bytes {} must be a power of two", name,
             ring_bytes);
}

std::string peer_label(const ShmChannelOptions& options) {
  return options.peer_name.empty() ? fmt::format("peer of shm segment '{}'", options.segment_name)
                                   : options.peer_name;
}

// True when `name` is an initialised segment of ours whose creator has exited (left by a crash).
bool is_stale_segment(const std::string& name) {
  try {
    bip::shared_memory_object shm(bip::open_only, name.c_str(), bip::read_only);
    bip::offset_t size = 0;
    if (!shm.get_size(size) || size < static_cast<bip::offset_t>(sizeof(SegmentControl))) return false;
    bip::mapped_region region(shm, bip::read_only, 0, sizeof(SegmentControl));
    const SegmentControl* control = control_of(region);
    if (control->header.state.load(std::memory_order_acquire) == kCreating) return false;
    if (control->header.magic != kSegmentMagic) return false;
    return process_gone(control->sides[kCreator].pid.load(std::memory_order_relaxed));
  } catch (const bip::interprocess_exception&) {
    return false;
  }
}

// Maps the segment once it exists and its creator has initialised it; nullopt while it is not ready.
std::optional<bip::mapped_region> map_ready_segment(const std::string& name) {
  bip::shared_memory_object shm;
  bip::offset_t size = 0;
  try {
    shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
    if (!shm.get_size(size) || size < static_cast<bip::offset_t>(sizeof(SegmentControl))) return std::nullopt;
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::not_found_error) return std::nullopt;
    raise("shm channel: cannot open shared-memory segment '{}': {}", name, e.what());
  }
  bip::mapped_region region;
  try {
    region = bip::mapped_region(shm, bip::read_write);  // the creator sized it once, before initialising
  } catch (const bip::interprocess_exception& e) {
    raise("shm channel: cannot map shared-memory segment '{}' ({} bytes): {}", name, size, e.what());
  }
  const SegmentControl* control = control_of(region);
  if (control->header.state.load(std::memory_order_acquire) == kCreating) return std::nullopt;
  const SegmentHeader& h = control->header;
  RA_REQUIRE(h.magic == kSegmentMagic && h.version == kSegmentVersion && h.control_bytes == sizeof(SegmentControl),
             "shm channel: segment '{}' is not a RetrievalAttention channel of this build (magic {:#x}, version {}, "
             "control {} bytes; expected {:#x}, {}, {})",
             name, h.magic, h.version, h.control_bytes, kSegmentMagic, kSegmentVersion, sizeof(SegmentControl));
  validate_ring_bytes(name, h.ring_bytes);
  RA_REQUIRE(static_cast<uint64_t>(size) == segment_bytes(h.ring_bytes),
             "shm channel: segment '{}' is {} bytes; its header implies {}", name, size, segment_bytes(h.ring_bytes));
  return region;
}

}  // namespace

std::chrono::microseconds shm_spin_budget(bool retriever_side) { return spin_budget(retriever_side ? kCreator : kOpener); }

std::unique_ptr<Channel> create_shm_channel(const ShmChannelOptions& options) {
  validate_common(options);
  const std::string& name = options.segment_name;
  validate_ring_bytes(name, options.ring_bytes);
  const uint64_t bytes = segment_bytes(options.ring_bytes);

  bip::shared_memory_object shm;
  for (int attempt = 0;; ++attempt) {
    try {
      shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write, bip::permissions(0600));
      break;
    } catch (const bip::interprocess_exception& e) {
      if (e.get_error_code() != bip::already_exists_error) {
        raise("shm channel: cannot create shared-memory segment '{}': {}", name, e.what());
      }
      if (attempt == 0 && is_stale_segment(name)) {
        remove_shm_segment(name);  // a crashed creator's leftover; nobody can attach to it usefully
        continue;
      }
      raise("shm channel: shared-memory segment '{}' already exists and its creator is alive (or it is not "
            "ours); segment names must be unique per job. Remove a leftover with remove_shm_segment() or "
            "`rm /dev/shm/{}`",
            name, name);
    }
  }

  try {
    shm.truncate(static_cast<bip::offset_t>(bytes));
    bip::mapped_region region(shm, bip::read_write);
#ifdef MADV_POPULATE_WRITE
    // Take every page now, so the hot path takes no page faults and a full /dev/shm fails here with a
    // message rather than with SIGBUS in the middle of a send. EINVAL: kernel older than 5.14.
    if (::madvise(region.get_address(), region.get_size(), MADV_POPULATE_WRITE) != 0 && errno != EINVAL) {
      raise("shm channel: cannot reserve {} bytes of shared memory for segment '{}' (is /dev/shm full?): {}",
            bytes, name, std::strerror(errno));
    }
#endif
    // The opener reads `state` only; it is zero (kCreating) both before and after this construction.
    SegmentControl* control = new (region.get_address()) SegmentControl();
    control->header.magic = kSegmentMagic;
    control->header.version = kSegmentVersion;
    control->header.control_bytes = sizeof(SegmentControl);
    control->header.ring_bytes = options.ring_bytes;
    control->sides[kCreator].pid.store(::getpid(), std::memory_order_relaxed);
    control->header.state.store(kReady, std::memory_order_release);
    return std::make_unique<ShmChannel>(std::move(region), kCreator, options, peer_label(options));
  } catch (...) {
    remove_shm_segment(name);
    throw;
  }
}

std::unique_ptr<Channel> open_shm_channel(const ShmChannelOptions& options) {
  validate_common(options);
  const std::string& name = options.segment_name;
  const std::string peer = peer_label(options);
  const auto start = SteadyClock::now();
  const auto deadline = start + options.open_timeout;
  for (;;) {
    if (std::optional<bip::mapped_region> region = map_ready_segment(name)) {
      SegmentControl* control = control_of(*region);
      uint32_t expected = kReady;
      RA_REQUIRE(control->header.state.compare_exchange_strong(expected, kClaimed, std::memory_order_acq_rel),
                 "shm channel: segment '{}' already has a peer attached (state {}); one opener per segment", name,
                 expected);
      control->sides[kOpener].pid.store(::getpid(), std::memory_order_relaxed);
      control->header.state.store(kAttached, std::memory_order_release);
      remove_shm_segment(name);  // both sides hold mappings now: nothing needs the name any more
#ifdef MADV_POPULATE_WRITE
      ::madvise(region->get_address(), region->get_size(), MADV_POPULATE_WRITE);  // best effort: our page tables
#endif
      return std::make_unique<ShmChannel>(std::move(*region), kOpener, options, peer);
    }
    const auto now = SteadyClock::now();
    if (now >= deadline) {
      throw PeerError(fmt::format("{}: timed out after {} ms waiting for shared-memory segment '{}' to be created "
                                  "and initialised",
                                  peer, to_ms(now - start), name));
    }
    std::this_thread::sleep_for(kOpenPollPeriod);
  }
}

void remove_shm_segment(const std::string& name) noexcept {
  try {
    bip::shared_memory_object::remove(name.c_str());
  } catch (...) {  // remove() already reports failure by value; nothing useful to do with either
  }
}

std::vector<std::string> list_stale_shm_segments(const std::string& prefix) {
  std::vector<std::string> stale;
  for (std::string& name : list_shm_segments(prefix)) {
    if (is_stale_segment(name)) stale.push_back(std::move(name));
  }
  return stale;
}

std::vector<std::string> list_shm_segments(const std::string& prefix) {
  std::vector<std::string> names;
  std::error_code ec;
  const std::filesystem::directory_iterator end;
  for (auto it = std::filesystem::directory_iterator("/dev/shm", ec); !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.starts_with(prefix)) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace ra::transport
