#include "gpu_worker/offload/prefill_shipper.h"

#include <algorithm>
#include <chrono>

#include "common/error.h"

namespace ra {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

PrefillShipper::PrefillShipper(RetrievalClient& client, PrefillCapture& capture, int max_pending_layers)
    : client_(client), capture_(capture), max_pending_(static_cast<size_t>(std::max(1, max_pending_layers))) {
  // send_build takes the rows in the client's forms: the capture must hold them so.
  RA_REQUIRE(capture.kv_rows() == client.kv_rows(),
             "prefill shipper: the capture holds {}/{} keys/values, the retrievers take {}/{}",
             wire_rows_name(capture.kv_rows().key), wire_rows_name(capture.kv_rows().value),
             wire_rows_name(client.kv_rows().key), wire_rows_name(client.kv_rows().value));
  capture_.on_layer_complete = [this](int64_t layer) { on_layer_complete(layer); };
  thread_ = std::thread([this] { run(); });
}

PrefillShipper::~PrefillShipper() {
  stop();
  capture_.on_layer_complete = nullptr;
}

void PrefillShipper::stop() noexcept {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PrefillShipper::on_layer_complete(int64_t layer) {
  const auto t0 = Clock::now();
  std::unique_lock lock(mu_);
  // Bounded memory: the backend waits while max_pending complete layers are not yet sent.
  cv_.wait(lock, [&] { return error_ || ready_.size() + (shipping_ ? 1 : 0) < max_pending_; });
  times_.backend_wait_seconds += seconds_since(t0);
  if (error_) std::rethrow_exception(error_);
  ready_.push_back(layer);
  cv_.notify_all();
}

void PrefillShipper::run() {
  for (;;) {
    int64_t layer = 0;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return closing_ || !ready_.empty(); });
      if (ready_.empty()) return;  // closing and nothing left
      layer = ready_.front();
      ready_.pop_front();
      shipping_ = true;
    }
    try {
      const auto t0 = Clock::now();
      client_.send_build(layer, capture_.first_offloaded(), capture_.offloaded(), capture_.keys(layer),
                         capture_.values(layer), capture_.train_rows(), capture_.train_queries(layer),
                         capture_.window_rows(), capture_.window_queries(layer), capture_.list_width(),
                         capture_.train_lists(layer), capture_.key_query_width(), capture_.key_queries(layer));
      capture_.release(layer);
      times_.ship_seconds += seconds_since(t0);
    } catch (...) {
      std::lock_guard lock(mu_);
      error_ = std::current_exception();
      shipping_ = false;
      cv_.notify_all();
      return;
    }
    std::lock_guard lock(mu_);
    shipping_ = false;
    ++shipped_;
    cv_.notify_all();
  }
}

void PrefillShipper::finish() {
  const auto t0 = Clock::now();
  stop();
  if (error_) std::rethrow_exception(error_);
  RA_REQUIRE(shipped_ == capture_.n_layers(), "the prefill completed {} of {} layers", shipped_,
             capture_.n_layers());
  client_.wait_builds();
  times_.build_tail_seconds = seconds_since(t0);
}

}  // namespace ra
