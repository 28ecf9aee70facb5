#pragma once
// Streams the prefill to the retrievers layer by layer (issue 16): as soon as the backend has produced
// every row of layer l, a shipping thread sends that layer's kBuild while the backend goes on with layer
// l + 1, and the retrievers build l while later layers prefill. The worker holds at most
// `max_pending_layers` captured layers (the observer waits for the shipper beyond that), never the
// whole prompt.
//
//   PrefillShipper shipper(client, capture);      // sets capture.on_layer_complete
//   options.qkv_observer = capture.observer();    // then the backend's prefill
//   shipper.finish();                             // after the prefill: joins, waits for every kBuildDone
//
// Errors of the shipping thread (a retriever that died, a deadline) are rethrown by the observer's
// next layer or by finish().

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "gpu_worker/offload/prefill_capture.h"
#include "gpu_worker/offload/retrieval_client.h"

namespace ra {

struct PrefillShipTimes {
  double ship_seconds = 0;       // shipping thread busy sending (overlapped with the prefill)
  double build_tail_seconds = 0; // finish(): from the end of the prefill to the last kBuildDone
  double backend_wait_seconds = 0;  // the prefill blocked because max_pending layers were not yet sent
};

class PrefillShipper {
 public:
  PrefillShipper(RetrievalClient& client, PrefillCapture& capture, int max_pending_layers = 2);
  ~PrefillShipper();
  PrefillShipper(const PrefillShipper&) = delete;
  PrefillShipper& operator=(const PrefillShipper&) = delete;

  // After the backend's prefill returned: ships what is left, joins, waits for every layer's build.
  void finish();
  const PrefillShipTimes& times() const { return times_; }

 private:
  void on_layer_complete(int64_t layer);  // the observer's thread
  void run();                             // the shipping thread
  void stop() noexcept;

  RetrievalClient& client_;
  PrefillCapture& capture_;
  const size_t max_pending_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<int64_t> ready_;  // complete layers not yet shipped
  int64_t shipped_ = 0;
  bool closing_ = false;
  bool shipping_ = false;      // the thread holds a layer
  std::exception_ptr error_;
  PrefillShipTimes times_;
  std::thread thread_;
};

}  // namespace ra
