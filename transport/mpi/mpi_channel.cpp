#include "transport/mpi/mpi_channel.h"

#include <algorithm>
#include <climits>
#include <thread>
#include <vector>

namespace ra::transport {
namespace {

constexpr size_t kChunkBytes = size_t{1} << 30;  // largest payload piece per MPI message (counts are int)

// Spin on MPI's progress for kSpinTime, then poll between short sleeps (as the UCX channel does).
constexpr auto kSpinTime = std::chrono::microseconds(200);
constexpr auto kSleepStep = std::chrono::microseconds(50);

class Backoff {
 public:
  void pause() {
    if (SteadyClock::now() - start_ >= kSpinTime) std::this_thread::sleep_for(kSleepStep);
  }

 private:
  SteadyClock::time_point start_ = SteadyClock::now();
};

// MPI's default error handler aborts the job; these checks matter when the caller set MPI_ERRORS_RETURN.
void check_mpi(int rc, const char* what, const std::string& peer) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw PeerError(fmt::format("MPI: {} ({}) failed: {}", what, peer, std::string_view(text, length)));
}

class MpiChannel final : public Channel {
 public:
  MpiChannel(MPI_Comm comm, int peer_rank, MpiChannelOptions options)
      : comm_(comm), peer_(peer_rank), options_(std::move(options)) {}

  ~MpiChannel() override {
    // Only after a deadline left transfers behind (see the header).
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    for (MPI_Request& request : pending_) {
      if (request == MPI_REQUEST_NULL) continue;
      MPI_Cancel(&request);
      MPI_Request_free(&request);
    }
  }

  const std::string& peer_name() const override { return options_.peer_name; }

  void send(uint32_t kind, uint64_t seq, std::span<const std::byte> payload, Deadline deadline) override {
    check_usable();
    header_out_ = MessageHeader{kind, 0, seq, payload.size()};
    pending_.clear();  // capacity reused: no allocation for sizes seen before
    pending_.push_back(MPI_REQUEST_NULL);
    check_mpi(MPI_Isend(&header_out_, sizeof header_out_, MPI_BYTE, peer_, options_.tag, comm_, &pending_.back()),
              "MPI_Isend", peer_name());
    for (size_t offset = 0; offset < payload.size(); offset += kChunkBytes) {
      const int count = static_cast<int>(std::min(kChunkBytes, payload.size() - offset));
      pending_.push_back(MPI_REQUEST_NULL);
      check_mpi(MPI_Isend(payload.data() + offset, count, MPI_BYTE, peer_, options_.tag, comm_, &pending_.back()),
                "MPI_Isend", peer_name());
    }
    wait_pending(deadline, "sending to");
  }

  MessageHeader recv(std::vector<std::byte>& payload, Deadline deadline) override {
    check_usable();
    Backoff backoff;
    for (;;) {
      MPI_Message message;
      MPI_Status status;
      if (probe(message, status)) return receive(message, status, payload, deadline);
      if (SteadyClock::now() >= deadline) {
        throw PeerError(fmt::format("timed out waiting for a message from {} (MPI)", peer_name()));
      }
      backoff.pause();
    }
  }

  bool try_recv(MessageHeader& header, std::vector<std::byte>& payload) override {
    check_usable();
    MPI_Message message;
    MPI_Status status;
    if (!probe(message, status)) return false;
    header = receive(message, status, payload, kNoDeadline);
    return true;
  }

  void heartbeat() override {}  // MPI cannot tell a live peer from a dead one; see the header

 private:
  void check_usable() const {
    if (!broken_.empty()) throw PeerError(fmt::format("MPI channel to {} is broken: {}", peer_name(), broken_));
  }

  bool probe(MPI_Message& message, MPI_Status& status) {
    int found = 0;
    check_mpi(MPI_Improbe(peer_, options_.tag, comm_, &found, &message, &status), "MPI_Improbe", peer_name());
    return found != 0;
  }

  // Takes the probed header message, then receives the payload pieces that follow it.
  MessageHeader receive(MPI_Message& message, const MPI_Status& status, std::vector<std::byte>& payload,
                        Deadline deadline) {
    int count = 0;
    check_mpi(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count", peer_name());
    if (count != static_cast<int>(sizeof(MessageHeader))) {
      std::vector<std::byte> junk(static_cast<size_t>(std::max(count, 0)));  // error path only
      MPI_Mrecv(junk.data(), count, MPI_BYTE, &message, MPI_STATUS_IGNORE);
      broken_ = "malformed header";
      throw PeerError(fmt::format("{} sent a {}-byte message where a {}-byte header belongs (MPI)", peer_name(),
                                  count, sizeof(MessageHeader)));
    }
    MessageHeader header;
    check_mpi(MPI_Mrecv(&header, sizeof header, MPI_BYTE, &message, MPI_STATUS_IGNORE), "MPI_Mrecv", peer_name());
    payload.resize(header.bytes);
    pending_.clear();
    for (size_t offset = 0; offset < payload.size(); offset += kChunkBytes) {
      const int piece = static_cast<int>(std::min(kChunkBytes, payload.size() - offset));
      pending_.push_back(MPI_REQUEST_NULL);
      check_mpi(MPI_Irecv(payload.data() + offset, piece, MPI_BYTE, peer_, options_.tag, comm_, &pending_.back()),
                "MPI_Irecv", peer_name());
    }
    wait_pending(deadline, "receiving from");
    return header;
  }

  // Polls pending_ until all complete. On the deadline the requests stay pending and the channel breaks.
  void wait_pending(Deadline deadline, std::string_view doing) {
    Backoff backoff;
    for (;;) {
      int done = 0;
      check_mpi(MPI_Testall(static_cast<int>(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE),
                "MPI_Testall", peer_name());
      if (done) return;
      if (SteadyClock::now() >= deadline) {
        broken_ = fmt::format("a transfer missed its deadline while {} the peer", doing);
        throw PeerError(fmt::format("timed out {} {} (MPI)", doing, peer_name()));
      }
      backoff.pause();
    }
  }

  MPI_Comm comm_;
  int peer_;
  MpiChannelOptions options_;
  MessageHeader header_out_;           // MPI reads it until the send completes
  std::vector<MPI_Request> pending_;   // the transfer in flight: header + payload pieces
  std::string broken_;                 // why the channel is unusable; empty when fine
};

}  // namespace

std::unique_ptr<Channel> make_mpi_channel(MPI_Comm comm, int peer_rank, MpiChannelOptions options) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  RA_REQUIRE(initialized, "MPI channel to {}: MPI is not initialised (call MPI_Init_thread first)",
             options.peer_name);
  int provided = 0;
  MPI_Query_thread(&provided);
  RA_REQUIRE(provided >= MPI_THREAD_SERIALIZED,
             "MPI channel to {}: MPI was initialised with thread level {}; the channel needs at least "
             "MPI_THREAD_SERIALIZED ({})",
             options.peer_name, provided, MPI_THREAD_SERIALIZED);
  int size = 0;
  MPI_Comm_size(comm, &size);
  RA_REQUIRE(peer_rank >= 0 && peer_rank < size, "MPI channel to {}: rank {} is not in a communicator of {}",
             options.peer_name, peer_rank, size);
  int* tag_upper_bound = nullptr;
  int has_bound = 0;
  MPI_Comm_get_attr(comm, MPI_TAG_UB, &tag_upper_bound, &has_bound);
  RA_REQUIRE(options.tag >= 0 && (!has_bound || options.tag <= *tag_upper_bound),
             "MPI channel to {}: tag {} is out of range", options.peer_name, options.tag);
  return std::make_unique<MpiChannel>(comm, peer_rank, std::move(options));
}

}  // namespace ra::transport
