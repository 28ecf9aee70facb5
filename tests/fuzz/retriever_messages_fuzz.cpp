// libFuzzer target: the messages a retriever receives from the worker (kBuild, kStep, kRewind and any
// other kind), after a valid kHello, into a RetrieverService on an in-process channel. Any sequence
// gives replies or a ra::Error (sent back as kError) naming the message: never a crash, a memory error
// or a hang (libFuzzer's -timeout).
//
// Input: byte 0 picks the index (even: flat, odd: the attention-aware graph), then messages, each
// [kind: 1 byte][length: 2 bytes, little-endian][payload: length bytes] (a short tail is the last
// payload). The model: 2 layers, 4 query heads, 2 kv heads of dim 8, bf16 store, sinks 2, window 4.
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "common/error.h"
#include "cpu_retriever/retriever_service.h"
#include "transport/hello.h"
#include "transport/inproc_channel.h"
#include "transport/messages.h"

namespace {

using ra::transport::MessageKind;

ra::retriever::RetrieverServiceConfig service_config(bool graph) {
  ra::retriever::RetrieverServiceConfig c;
  c.geometry = {2, 4, 2, 8, 0.35f};
  c.dtype = ra::retriever::KvDtype::kBF16;
  c.owned_kv_heads = {{0, 1}, {0, 1}};
  c.index.kind = graph ? ra::retriever::IndexKind::kGraph : ra::retriever::IndexKind::kFlat;
  c.index.graph.M = 8;
  c.index.graph.Kq = 8;
  c.index.graph.threads = 1;
  c.index.graph_per_kv_head = true;
  c.search_group = 1;
  c.threads = 1;
  c.sinks = 2;
  c.window = 4;
  c.name = "retriever 0";
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const ra::retriever::RetrieverServiceConfig config = service_config(data[0] & 1);
  auto [worker, retriever] = ra::transport::make_inproc_pair("worker", "retriever 0", std::chrono::seconds(5));
  std::thread service([&config, ch = retriever.get()] {
    try {
      ra::retriever::RetrieverService(config).serve(*ch);
    } catch (const ra::Error&) {  // a refused message ends the service (after its kError)
    }
  });
  const auto deadline = ra::transport::deadline_after(std::chrono::seconds(5));
  uint64_t seq = 0;
  try {
    ra::transport::HelloPayload hello = ra::transport::make_hello(config.geometry, 0);
    const char plan[] = "{}";
    hello.plan_bytes = sizeof(plan) - 1;
    std::vector<std::byte> bytes(sizeof(hello) + hello.plan_bytes);
    std::memcpy(bytes.data(), &hello, sizeof(hello));
    std::memcpy(bytes.data() + sizeof(hello), plan, hello.plan_bytes);
    worker->send(ra::transport::to_wire(MessageKind::kHello), ++seq, bytes, deadline);
    for (size_t at = 1; at < size;) {
      // Every kind, and a few unknown ones; but kSaveShards (11), which writes the file the worker names,
      // is sent as kLoadShards (13): the fuzzer must not write files.
      uint32_t kind = data[at] % 15;
      if (kind == ra::transport::to_wire(MessageKind::kSaveShards)) kind = ra::transport::to_wire(MessageKind::kLoadShards);
      const size_t len = at + 3 <= size ? (data[at + 1] | (data[at + 2] << 8)) : 0;
      const size_t begin = std::min(size, at + 3), end = std::min(size, begin + len);
      worker->send(kind, ++seq, std::as_bytes(std::span(data + begin, end - begin)), deadline);
      at = end;
    }
    worker->send(ra::transport::to_wire(MessageKind::kShutdown), ++seq, {}, deadline);
  } catch (const ra::Error&) {  // the service ended (and closed) before all was sent
  }
  service.join();
  return 0;
}
