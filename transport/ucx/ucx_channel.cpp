#include "transport/ucx/ucx_channel.h"

#include <poll.h>
#include <sched.h>
#include <ucp/api/ucp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <utility>

#include "transport/cpu_relax.h"

namespace ra::transport {
namespace detail {

// One ucp context and worker, shared by the UcxWorker handle and every channel made from it.
struct UcxWorkerState {
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  int event_fd = -1;  // the worker's event fd (UCP_FEATURE_WAKEUP): readable once armed and an event comes
  std::atomic<int> sleepers{0};  // threads blocked (or about to block) on event_fd
  std::mutex ids_mutex;
  std::set<uint32_t> ids;  // channel ids in use on this worker

  // ucp_worker_progress, waking the threads blocked on the event fd when it did something: what it
  // took in (a message, a completion) may be what one of them waits for, and that thread's own wake-up
  // event was consumed here. A thread that progresses nothing, or when nobody sleeps, makes no syscall.
  unsigned progress() {
    const unsigned n = ucp_worker_progress(worker);
    if (n != 0 && sleepers.load() > 0) ucp_worker_signal(worker);
    return n;
  }

  ~UcxWorkerState() {
    if (worker) ucp_worker_destroy(worker);
    if (context) ucp_cleanup(context);
  }
};

}  // namespace detail

namespace {

using detail::UcxWorkerState;

constexpr uint64_t kStreamData = 1;
constexpr uint64_t kStreamHeartbeat = 2;
constexpr uint64_t kStreamFragment = 3;
constexpr ucp_tag_t kExactMatch = ~ucp_tag_t{0};

// The last value on the heartbeat stream: "I have closed my end". UCX does not tell the peer when one
// endpoint closes while its worker lives on, so the closing side says so itself.
constexpr uint64_t kGoodbye = ~uint64_t{0};
constexpr auto kGoodbyeWait = std::chrono::milliseconds(100);  // when breaking: a live peer answers fast

// Payloads above kFragmentBytes travel as fragments, at most kWindow in flight each way, so that
// heartbeats get through during a long transfer (see the header).
constexpr size_t kFragmentBytes = size_t{4} << 20;
constexpr int kWindow = 4;

// Waits spin on ucp_worker_progress for kSpinTime (a reply in flight lands within tens of microseconds
// over tcp: 20-70 µs measured); any progress restarts the spin, so a transfer under way never blocks.
// Then they block in UCX's blocking-progress pattern (ucp_worker_arm, then poll the worker's event fd),
// for at most kBlockSlice at a time so that the deadline and the peer's liveness are still checked; an
// arriving message, a completion or a heartbeat wakes them at once (measured: a wake-up costs ~0.15 ms
// more than a spin catch over tcp loopback on the 2-core dev machine, hence the longer spin than shm's).
constexpr auto kSpinTime = std::chrono::microseconds(200);
constexpr auto kBlockSlice = std::chrono::milliseconds(1);

ucp_tag_t make_tag(uint32_t channel_id, uint64_t stream) { return (uint64_t{channel_id} << 32) | stream; }

int64_t now_ns() { return SteadyClock::now().time_since_epoch().count(); }

void check(ucs_status_t status, const char* what) {
  RA_REQUIRE(status == UCS_OK, "UCX: {} failed: {}", what, ucs_status_string(status));
}

// When a wait that made no progress should block rather than spin (kSpinTime since the last progress),
// and whether the event fd woke it for nothing last time. UCX's tcp transport keeps a socket's
// write-readiness in the worker's (level-triggered) event set while it has sent data outstanding, so the
// fd can read ready with nothing to progress; polling it again would spin through system calls and
// starve the peer (and loopback's softirq) on a loaded machine. Such a waiter yields its core instead.
class Backoff {
 public:
  bool spent(bool progressed) {
    const auto now = SteadyClock::now();
    if (progressed) start_ = now;
    busy_fd_ = !progressed && woke_;
    woke_ = false;
    return now - start_ >= kSpinTime;
  }
  void woke() { woke_ = true; }
  bool busy_fd() const { return busy_fd_; }

 private:
  SteadyClock::time_point start_ = SteadyClock::now();
  bool woke_ = false;     // the last block ended on a ready event fd
  bool busy_fd_ = false;  // ... and the progress after it found nothing
};

class UcxChannel final : public Channel {
 public:
  UcxChannel(std::shared_ptr<UcxWorkerState> state, std::span<const std::byte> remote_address,
             UcxChannelOptions options)
      : state_(std::move(state)),
        worker_(state_->worker),
        options_(std::move(options)),
        data_tag_(make_tag(options_.channel_id, kStreamData)),
        heartbeat_tag_(make_tag(options_.channel_id, kStreamHeartbeat)),
        fragment_tag_(make_tag(options_.channel_id, kStreamFragment)) {
    ucp_ep_params_t params{};
    params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                        UCP_EP_PARAM_FIELD_ERR_HANDLER;
    params.address = reinterpret_cast<const ucp_address_t*>(remote_address.data());
    params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    params.err_handler.cb = &UcxChannel::on_endpoint_error;
    params.err_handler.arg = this;
    const ucs_status_t status = ucp_ep_create(worker_, &params, &ep_);
    RA_REQUIRE(status == UCS_OK, "UCX: cannot create an endpoint to {}: {}", options_.peer_name,
               ucs_status_string(status));
    mark_alive();
  }

  ~UcxChannel() override {
    {
      std::lock_guard lock(heartbeat_mutex_);
      // A flush waits for the peer; a dead or silent one (the error being unwound) would hold this
      // process, and with it the job's end, for a whole liveness timeout.
      close_endpoint(peer_problem(kNoDeadline, "closing").empty());
      // The force close completed every request on the endpoint, the pending heartbeat included.
      if (heartbeat_request_) ucp_request_free(heartbeat_request_);
    }
    // Heartbeats (and the peer's goodbye) that already arrived would otherwise sit in the worker's
    // unexpected queue, and UCX warns about them when the worker is destroyed.
    ucp_worker_progress(worker_);
    drain_heartbeats();
    std::lock_guard lock(state_->ids_mutex);
    state_->ids.erase(options_.channel_id);
  }

  const std::string& peer_name() const override { return options_.peer_name; }

  void send(uint32_t kind, uint64_t seq, std::span<const std::byte> payload, Deadline deadline) override {
    check_usable();
    throw_if_endpoint_failed();
    // Header and iov live in the channel: UCX may read them until the request completes.
    send_header_ = MessageHeader{kind, 0, seq, payload.size()};
    const bool whole = payload.size() <= kFragmentBytes;
    send_iov_[0] = {&send_header_, sizeof(MessageHeader)};
    send_iov_[1] = {const_cast<std::byte*>(payload.data()), payload.size()};
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE;
    param.datatype = ucp_dt_make_iov();
    const size_t n_iov = whole && !payload.empty() ? 2 : 1;
    track(ucp_tag_send_nbx(ep_, send_iov_, n_iov, data_tag_, &param), false, 0);
    if (!whole) {
      for (size_t offset = 0; offset < payload.size(); offset += kFragmentBytes) {
        wait_in_flight(kWindow - 1, deadline, "sending to");
        const size_t n = std::min(kFragmentBytes, payload.size() - offset);
        ucp_request_param_t contig{};
        track(ucp_tag_send_nbx(ep_, payload.data() + offset, n, fragment_tag_, &contig), false, 0);
      }
    }
    wait_in_flight(0, deadline, "sending to");
    messages_out_.fetch_add(1, std::memory_order_relaxed);
  }

  MessageHeader recv(std::vector<std::byte>& payload, Deadline deadline) override {
    check_usable();
    Backoff backoff;
    for (;;) {
      const bool progressed = state_->progress() != 0;
      drain_heartbeats();
      const std::string problem = peer_problem(deadline, "waiting for a message from");  // before the probe
      ucp_tag_recv_info_t info;
      if (ucp_tag_message_h message = ucp_tag_probe_nb(worker_, data_tag_, kExactMatch, 1, &info)) {
        return receive(message, info.length, payload, deadline);
      }
      if (!problem.empty()) throw PeerError(problem);
      if (backoff.spent(progressed)) {
        block([&] { return ucp_tag_probe_nb(worker_, data_tag_, kExactMatch, 0, &info) != nullptr; }, deadline,
              backoff);
      } else {
        cpu_relax();
      }
    }
  }

  bool try_recv(MessageHeader& header, std::vector<std::byte>& payload) override {
    check_usable();
    ucp_worker_progress(worker_);
    drain_heartbeats();
    const std::string problem = peer_problem(kNoDeadline, "waiting for a message from");  // before the probe
    ucp_tag_recv_info_t info;
    if (ucp_tag_message_h message = ucp_tag_probe_nb(worker_, data_tag_, kExactMatch, 1, &info)) {
      header = receive(message, info.length, payload, kNoDeadline);  // a message that began arriving
      return true;
    }
    if (!problem.empty()) throw PeerError(problem);
    return false;
  }

  // Never throws: a failure here shows up in the owner's next wait as a dead or silent peer.
  void heartbeat() override {
    std::lock_guard lock(heartbeat_mutex_);
    if (ep_ == nullptr) {  // closed after a failure; still progress, so the peer's close can finish
      state_->progress();
      return;
    }
    if (heartbeat_request_) {
      if (ucp_request_check_status(heartbeat_request_) == UCS_INPROGRESS) {
        state_->progress();  // the previous one is still leaving: skip this beat
        return;
      }
      ucp_request_free(std::exchange(heartbeat_request_, nullptr));
    }
    ++heartbeat_out_;
    ucp_request_param_t param{};
    const ucs_status_ptr_t request =
        ucp_tag_send_nbx(ep_, &heartbeat_out_, sizeof heartbeat_out_, heartbeat_tag_, &param);
    if (UCS_PTR_IS_PTR(request)) heartbeat_request_ = request;
    if (!UCS_PTR_IS_ERR(request)) heartbeats_out_.fetch_add(1, std::memory_order_relaxed);
    // Progress here also lets the peer's wire-up and flushes finish, and drains the peer's heartbeats,
    // while the owner is busy elsewhere.
    state_->progress();
    drain_heartbeats();
  }

  UcxChannelStats stats() const {
    return {heartbeats_out_.load(), heartbeats_in_.load(), messages_out_.load(), messages_in_.load()};
  }

  std::string transports() const {
    if (ep_ == nullptr) return "closed";
    char* text = nullptr;
    size_t size = 0;
    FILE* stream = open_memstream(&text, &size);
    RA_ASSERT(stream != nullptr);
    ucp_ep_print_info(ep_, stream);
    std::fclose(stream);
    std::string result(text, size);
    std::free(text);
    return result;
  }

 private:
  // A request in flight; received fragments also carry their expected size.
  struct InFlight {
    ucs_status_ptr_t request = nullptr;
    bool is_fragment_recv = false;
    size_t expected_bytes = 0;
  };

  static void on_endpoint_error(void* arg, ucp_ep_h, ucs_status_t status) {
    static_cast<UcxChannel*>(arg)->endpoint_status_.store(status);
  }

  void mark_alive() { last_sign_of_life_ns_.store(now_ns(), std::memory_order_relaxed); }

  void check_usable() const {
    if (!broken_.empty()) throw PeerError(fmt::format("UCX channel to {} is broken: {}", peer_name(), broken_));
  }

  // Why the peer is gone, or empty while it is alive.
  std::string endpoint_problem() const {
    const ucs_status_t status = endpoint_status_.load();
    if (status != UCS_OK) {
      return fmt::format("{} died or closed its end of the UCX channel ({})", peer_name(), ucs_status_string(status));
    }
    if (peer_closed_.load()) return fmt::format("{} closed its end of the UCX channel", peer_name());
    return {};
  }

  void throw_if_endpoint_failed() const {
    if (std::string problem = endpoint_problem(); !problem.empty()) throw PeerError(problem);
  }

  // Why a wait must end (the peer failed, went silent, or `deadline` passed), or empty. Waits evaluate it
  // BEFORE looking for what they wait for, and throw only if that is still missing: whatever arrived
  // before the failure (a last message, a goodbye's predecessors) is delivered first, even when the
  // heartbeat thread's progress call took both in at once.
  std::string peer_problem(Deadline deadline, std::string_view waiting_for) const {
    if (std::string problem = endpoint_problem(); !problem.empty()) return problem;
    const int64_t silent_ns = now_ns() - last_sign_of_life_ns_.load(std::memory_order_relaxed);
    if (silent_ns > std::chrono::nanoseconds(options_.liveness_timeout).count()) {
      return fmt::format("{} has been silent for {} ms (liveness timeout {} ms)", peer_name(), silent_ns / 1'000'000,
                         options_.liveness_timeout.count());
    }
    if (SteadyClock::now() >= deadline) return fmt::format("timed out {} {}", waiting_for, peer_name());
    return {};
  }

  // Receives the probed data message of `length` bytes, and the fragments that follow a header-only one.
  MessageHeader receive(ucp_tag_message_h message, size_t length, std::vector<std::byte>& payload,
                        Deadline deadline) {
    const bool whole_header = length >= sizeof(MessageHeader);
    payload.resize(whole_header ? length - sizeof(MessageHeader) : 0);  // capacity reused
    recv_header_ = MessageHeader{};
    recv_iov_[0] = {&recv_header_, whole_header ? sizeof(MessageHeader) : length};
    recv_iov_[1] = {payload.data(), payload.size()};
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE;
    param.datatype = ucp_dt_make_iov();
    track(ucp_tag_msg_recv_nbx(worker_, recv_iov_, payload.empty() ? 1 : 2, message, &param), false, 0);
    wait_in_flight(0, deadline, "receiving from");

    const uint64_t bytes = recv_header_.bytes;
    const bool fragmented = whole_header && length == sizeof(MessageHeader) && bytes > kFragmentBytes;
    if (!whole_header || (bytes != payload.size() && !fragmented)) {
      fail(fmt::format("{} sent a malformed message: {} bytes on the wire, header says {} + {}", peer_name(),
                       length, sizeof(MessageHeader), bytes));
    }
    if (fragmented) {
      payload.resize(bytes);
      for (size_t offset = 0; offset < bytes; offset += kFragmentBytes) {
        wait_in_flight(kWindow - 1, deadline, "receiving from");
        const size_t n = std::min<size_t>(kFragmentBytes, bytes - offset);
        ucp_request_param_t contig{};
        contig.op_attr_mask = UCP_OP_ATTR_FIELD_RECV_INFO;
        contig.recv_info.tag_info = &fragment_info_;
        fragment_info_.length = n;  // what an immediate completion leaves when UCX fills nothing in
        track(ucp_tag_recv_nbx(worker_, payload.data() + offset, n, fragment_tag_, kExactMatch, &contig), true, n);
      }
      wait_in_flight(0, deadline, "receiving from");
    }
    mark_alive();
    messages_in_.fetch_add(1, std::memory_order_relaxed);
    return recv_header_;
  }

  // Adds the result of a ucp_*_nbx call to the in-flight set (or checks an immediate completion).
  void track(ucs_status_ptr_t request, bool is_fragment_recv, size_t expected_bytes) {
    if (UCS_PTR_IS_ERR(request)) fail_transfer(UCS_PTR_STATUS(request));
    if (request == nullptr) {
      if (is_fragment_recv && fragment_info_.length != expected_bytes) {
        fail_fragment(fragment_info_.length, expected_bytes);
      }
      return;
    }
    RA_ASSERT(n_in_flight_ < static_cast<int>(in_flight_.size()));
    in_flight_[n_in_flight_++] = {request, is_fragment_recv, expected_bytes};
  }

  // Progresses until at most `max_left` requests are in flight. When a request fails, or the peer fails,
  // goes silent or `deadline` passes first, abandons them all, breaks the channel and throws.
  void wait_in_flight(int max_left, Deadline deadline, std::string_view doing) {
    Backoff backoff;
    while (n_in_flight_ > max_left) {
      const bool progressed = state_->progress() != 0;
      drain_heartbeats();
      const std::string problem = peer_problem(deadline, doing);  // before reaping: see peer_problem
      reap();
      if (n_in_flight_ <= max_left) return;
      if (!problem.empty()) fail(problem);
      if (backoff.spent(progressed)) {
        block([&] {
          for (int i = 0; i < n_in_flight_; ++i) {
            if (ucp_request_check_status(in_flight_[i].request) != UCS_INPROGRESS) return true;
          }
          return false;
        }, deadline, backoff);
      } else {
        cpu_relax();
      }
    }
  }

  // One blocking step of a wait (UCX's blocking-progress pattern): arm the worker, then, unless events
  // are pending or ready() already holds, sleep on its event fd until an event, another thread's
  // progress (UcxWorkerState::progress signals sleepers), kBlockSlice or the deadline. The caller
  // progresses and rechecks after it. Counting as a sleeper before arming, and checking ready() after,
  // closes the gap in which another thread could take our event in without signalling us.
  // A fd that woke the last block for nothing (see Backoff) is not polled again at once: the waiter
  // yields its core for this turn instead.
  template <typename Ready>
  void block(Ready ready, Deadline deadline, Backoff& backoff) {
    if (backoff.busy_fd()) {
      sched_yield();
      return;
    }
    state_->sleepers.fetch_add(1);
    if (ucp_worker_arm(worker_) == UCS_OK && !ready()) {
      const auto left = deadline - SteadyClock::now();
      const auto slice = std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::min<SteadyClock::duration>(kBlockSlice, left));
      if (slice.count() > 0) {
        const timespec ts{0, static_cast<long>(slice.count())};
        pollfd p{state_->event_fd, POLLIN, 0};
        if (::ppoll(&p, 1, &ts, nullptr) > 0) backoff.woke();
      }
    }
    state_->sleepers.fetch_sub(1);
  }

  // Frees the completed requests; throws on a failed one (leaving the unfinished ones to be abandoned).
  void reap() {
    int kept = 0;
    for (int i = 0; i < n_in_flight_; ++i) {
      const InFlight f = in_flight_[i];
      ucp_tag_recv_info_t info{};
      const ucs_status_t status = f.is_fragment_recv ? ucp_tag_recv_request_test(f.request, &info)
                                                     : ucp_request_check_status(f.request);
      if (status == UCS_INPROGRESS) {
        in_flight_[kept++] = f;
        continue;
      }
      ucp_request_free(f.request);
      const bool short_fragment = status == UCS_OK && f.is_fragment_recv && info.length != f.expected_bytes;
      if (status != UCS_OK || short_fragment) {
        for (int j = i + 1; j < n_in_flight_; ++j) in_flight_[kept++] = in_flight_[j];
        n_in_flight_ = kept;
        if (short_fragment) fail_fragment(info.length, f.expected_bytes);
        fail_transfer(status);
      }
      if (f.is_fragment_recv) mark_alive();  // data is flowing
    }
    n_in_flight_ = kept;
  }

  // A request completed with an error: report the peer's failure when that is the cause.
  [[noreturn]] void fail_transfer(ucs_status_t status) {
    std::string problem = endpoint_problem();
    fail(problem.empty() ? fmt::format("UCX: a transfer with {} failed: {}", peer_name(), ucs_status_string(status))
                         : std::move(problem));
  }

  [[noreturn]] void fail_fragment(size_t got, size_t expected) {
    fail(fmt::format("{} sent a {}-byte fragment where {} bytes belong", peer_name(), got, expected));
  }

  // Abandons whatever is in flight, breaks the channel, and throws PeerError(why).
  [[noreturn]] void fail(std::string why) {
    abandon_in_flight(why);
    throw PeerError(why);
  }

  // Ends every unfinished request so that UCX no longer touches the caller's buffers, then breaks the
  // channel. ucp_request_cancel finishes receives still waiting for a match; sends and matched
  // rendezvous transfers are finished (as cancelled) by force-closing the endpoint. The goodbye sent
  // before tells a live peer at once.
  void abandon_in_flight(std::string_view why) {
    for (int i = 0; i < n_in_flight_; ++i) ucp_request_cancel(worker_, in_flight_[i].request);
    ucp_worker_progress(worker_);
    broken_ = why;
    {
      std::lock_guard lock(heartbeat_mutex_);
      close_endpoint(false);  // no flush: it would wait for the requests being abandoned
    }
    const auto give_up = SteadyClock::now() + std::chrono::seconds(10);
    for (int i = 0; i < n_in_flight_; ++i) {
      while (ucp_request_check_status(in_flight_[i].request) == UCS_INPROGRESS) {
        RA_ASSERT_MSG(SteadyClock::now() < give_up,
                      "UCX kept a request to {} alive after a force close; its buffer cannot be released "
                      "(shared-memory transports with UCX_*_ERROR_HANDLING=y do this)",
                      peer_name());
        ucp_worker_progress(worker_);
      }
      ucp_request_free(in_flight_[i].request);
    }
    n_in_flight_ = 0;
  }

  // Receives every heartbeat that has arrived. Either thread may call it; one drains at a time.
  void drain_heartbeats() {
    std::unique_lock lock(drain_mutex_, std::try_to_lock);
    if (!lock) return;
    ucp_tag_recv_info_t info;
    while (ucp_tag_message_h message = ucp_tag_probe_nb(worker_, heartbeat_tag_, kExactMatch, 1, &info)) {
      ucp_request_param_t param{};
      ucs_status_ptr_t request = ucp_tag_msg_recv_nbx(worker_, &heartbeat_in_, sizeof heartbeat_in_, message, &param);
      // A probed 8-byte eager message has arrived whole; completion needs at most a progress call.
      if (UCS_PTR_IS_PTR(request)) {
        while (ucp_request_check_status(request) == UCS_INPROGRESS) ucp_worker_progress(worker_);
        ucp_request_free(request);
      }
      if (heartbeat_in_ == kGoodbye) peer_closed_.store(true);
      heartbeats_in_.fetch_add(1, std::memory_order_relaxed);
      mark_alive();
    }
  }

  // Says goodbye, then force-closes. Before the force close, waits (bounded) for the goodbye to leave,
  // or with `flush_first` for everything sent to reach the peer. A force close needs no answer from the
  // peer, so a dead or stopped peer cannot hang this. Called with heartbeat_mutex_ held.
  void close_endpoint(bool flush_first) {
    if (ep_ == nullptr) return;
    ucp_request_param_t param{};
    const ucs_status_ptr_t goodbye = ucp_tag_send_nbx(ep_, &kGoodbye, sizeof kGoodbye, heartbeat_tag_, &param);
    const bool healthy = endpoint_status_.load() == UCS_OK;
    const ucs_status_ptr_t flush = flush_first && healthy ? ucp_ep_flush_nbx(ep_, &param) : nullptr;
    // The flush needs the peer to progress; the goodbye alone may wait for UCX's wire-up to finish.
    const ucs_status_ptr_t awaited = flush_first ? flush : goodbye;
    const auto give_up = SteadyClock::now() + (flush_first ? options_.liveness_timeout : kGoodbyeWait);
    while (healthy && UCS_PTR_IS_PTR(awaited) && ucp_request_check_status(awaited) == UCS_INPROGRESS &&
           SteadyClock::now() < give_up) {
      ucp_worker_progress(worker_);
    }
    // The force close completes (as cancelled) whatever is still unfinished on the endpoint.
    ucp_request_param_t force{};
    force.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    force.flags = UCP_EP_CLOSE_FLAG_FORCE;
    for (ucs_status_ptr_t request : {ucp_ep_close_nbx(std::exchange(ep_, nullptr), &force), flush, goodbye}) {
      if (!UCS_PTR_IS_PTR(request)) continue;
      while (ucp_request_check_status(request) == UCS_INPROGRESS) ucp_worker_progress(worker_);
      ucp_request_free(request);
    }
  }

  std::shared_ptr<UcxWorkerState> state_;
  ucp_worker_h worker_;
  UcxChannelOptions options_;
  const ucp_tag_t data_tag_;
  const ucp_tag_t heartbeat_tag_;
  const ucp_tag_t fragment_tag_;
  ucp_ep_h ep_ = nullptr;  // written by the owner under heartbeat_mutex_; null once closed

  std::atomic<ucs_status_t> endpoint_status_{UCS_OK};  // set by the error callback, on any thread
  std::atomic<bool> peer_closed_{false};               // the peer sent kGoodbye
  std::atomic<int64_t> last_sign_of_life_ns_{0};       // SteadyClock ns of the last message or heartbeat
  std::string broken_;                                 // why the channel is unusable; empty when fine

  // Owner-thread state: what UCX reads or writes while a data transfer is in flight.
  MessageHeader send_header_;
  MessageHeader recv_header_;
  ucp_dt_iov_t send_iov_[2];
  ucp_dt_iov_t recv_iov_[2];
  ucp_tag_recv_info_t fragment_info_{};
  std::array<InFlight, kWindow + 1> in_flight_;  // the window, plus the header-only message
  int n_in_flight_ = 0;

  // Heartbeats.
  std::mutex heartbeat_mutex_;  // heartbeat() against the owner closing the endpoint
  uint64_t heartbeat_out_ = 0;  // the counter being sent; unchanged while heartbeat_request_ is in flight
  ucs_status_ptr_t heartbeat_request_ = nullptr;
  std::mutex drain_mutex_;
  uint64_t heartbeat_in_ = 0;   // receive scratch
  std::atomic<uint64_t> heartbeats_in_{0};

  // Counters for UcxChannelStats, read from any thread.
  std::atomic<uint64_t> heartbeats_out_{0};
  std::atomic<uint64_t> messages_out_{0};
  std::atomic<uint64_t> messages_in_{0};
};

}  // namespace

UcxWorker::UcxWorker() : state_(std::make_shared<UcxWorkerState>()) {
  ucp_config_t* config = nullptr;
  check(ucp_config_read(nullptr, nullptr, &config), "reading the configuration (UCX_* variables)");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;  // WAKEUP: the event fd that waits block on
  const ucs_status_t status = ucp_init(&params, config, &state_->context);
  ucp_config_release(config);
  check(status, "ucp_init");

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_MULTI;
  check(ucp_worker_create(state_->context, &worker_params, &state_->worker), "ucp_worker_create");

  ucp_worker_attr_t attr{};
  attr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
  check(ucp_worker_query(state_->worker, &attr), "ucp_worker_query");
  RA_REQUIRE(attr.thread_mode == UCS_THREAD_MODE_MULTI,
             "UCX: this UCX build has no multi-threaded workers (configure it with --enable-mt); the "
             "channel's heartbeat needs one");
  check(ucp_worker_get_efd(state_->worker, &state_->event_fd), "ucp_worker_get_efd");
}

UcxWorker::~UcxWorker() = default;

std::vector<std::byte> UcxWorker::local_address() const {
  ucp_address_t* address = nullptr;
  size_t length = 0;
  check(ucp_worker_get_address(state_->worker, &address, &length), "ucp_worker_get_address");
  const auto* bytes = reinterpret_cast<const std::byte*>(address);
  std::vector<std::byte> result(bytes, bytes + length);
  ucp_worker_release_address(state_->worker, address);
  return result;
}

std::unique_ptr<Channel> UcxWorker::connect(std::span<const std::byte> remote_address, UcxChannelOptions options) {
  RA_REQUIRE(!remote_address.empty(), "UCX: empty worker address for {}", options.peer_name);
  const uint32_t id = options.channel_id;
  {
    std::lock_guard lock(state_->ids_mutex);
    RA_REQUIRE(state_->ids.insert(id).second, "UCX: channel id {} is already used on this worker (connecting to {})",
               id, options.peer_name);
  }
  try {
    return std::make_unique<UcxChannel>(state_, remote_address, std::move(options));
  } catch (...) {
    std::lock_guard lock(state_->ids_mutex);
    state_->ids.erase(id);
    throw;
  }
}

UcxChannelStats ucx_channel_stats(const Channel& channel) {
  const auto* ucx = dynamic_cast<const UcxChannel*>(&channel);
  RA_ASSERT_MSG(ucx != nullptr, "ucx_channel_stats: not a UCX channel");
  return ucx->stats();
}

std::string ucx_channel_transports(const Channel& channel) {
  const auto* ucx = dynamic_cast<const UcxChannel*>(&channel);
  RA_ASSERT_MSG(ucx != nullptr, "ucx_channel_transports: not a UCX channel");
  return ucx->transports();
}

}  // namespace ra::transport
