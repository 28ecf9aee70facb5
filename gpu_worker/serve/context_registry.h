#pragma once
// The prebuilt contexts (POST /v1/contexts): documents whose token ids a later prompt may start with.
// The registry holds ids and tokens only; whether a context's KV is still in the cache is the engine's
// business (GenerationRequest::reusable_prefix). Thread-safe.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ra::serve {

struct ContextRecord {
  std::string id;  // "ctx-..."
  std::shared_ptr<const std::vector<int32_t>> tokens;  // BOS included, as prefilled
  int64_t created = 0;       // Unix seconds
  double prefill_ms = 0.0;   // what building it took
};

class ContextRegistry {
 public:
  explicit ContextRegistry(size_t capacity);

  bool full() const;
  // Registers a prefilled document. Throws ApiError (400) when `capacity` contexts exist.
  ContextRecord add(std::vector<int32_t> tokens, double prefill_ms);
  std::optional<ContextRecord> find(std::string_view id) const;
  bool remove(std::string_view id);
  std::vector<ContextRecord> list() const;  // oldest first
  // The length of the longest registered context that `prompt` starts with; 0 when none.
  int64_t longest_prefix(std::span<const int32_t> prompt) const;

 private:
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::map<std::string, ContextRecord, std::less<>> contexts_;
  uint64_t next_ = 1;
  uint64_t salt_;  // makes ids differ between server runs
};

}  // namespace ra::serve
