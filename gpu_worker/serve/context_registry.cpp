#include "gpu_worker/serve/context_registry.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "gpu_worker/serve/api_error.h"

namespace ra::serve {

ContextRegistry::ContextRegistry(size_t capacity) : capacity_(capacity), salt_(std::random_device{}()) {}

bool ContextRegistry::full() const {
  std::lock_guard lock(mutex_);
  return contexts_.size() >= capacity_;
}

ContextRecord ContextRegistry::add(std::vector<int32_t> tokens, double prefill_ms) {
  std::lock_guard lock(mutex_);
  if (contexts_.size() >= capacity_) {
    throw invalid_request(
        fmt::format("{} contexts exist, the most this server keeps (--max-contexts); DELETE /v1/contexts/ID one",
                    contexts_.size()),
        {}, "too_many_contexts");
  }
  ContextRecord r;
  r.id = fmt::format("ctx-{:08x}{:04x}", static_cast<uint32_t>(salt_), next_++);
  r.tokens = std::make_shared<const std::vector<int32_t>>(std::move(tokens));
  r.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                  .count();
  r.prefill_ms = prefill_ms;
  contexts_.emplace(r.id, r);
  return r;
}

std::optional<ContextRecord> ContextRegistry::find(std::string_view id) const {
  std::lock_guard lock(mutex_);
  const auto it = contexts_.find(id);
  if (it == contexts_.end()) return std::nullopt;
  return it->second;
}

bool ContextRegistry::remove(std::string_view id) {
  std::lock_guard lock(mutex_);
  const auto it = contexts_.find(id);
  if (it == contexts_.end()) return false;
  contexts_.erase(it);
  return true;
}

std::vector<ContextRecord> ContextRegistry::list() const {
  std::lock_guard lock(mutex_);
  std::vector<ContextRecord> out;
  for (const auto& [id, r] : contexts_) out.push_back(r);  // ids grow with creation
  return out;
}

int64_t ContextRegistry::longest_prefix(std::span<const int32_t> prompt) const {
  std::lock_guard lock(mutex_);
  int64_t best = 0;
  for (const auto& [id, r] : contexts_) {
    const std::vector<int32_t>& t = *r.tokens;
    if (static_cast<int64_t>(t.size()) > best && t.size() <= prompt.size() &&
        std::equal(t.begin(), t.end(), prompt.begin())) {
      best = static_cast<int64_t>(t.size());
    }
  }
  return best;
}

}  // namespace ra::serve
