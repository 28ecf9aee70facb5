#pragma once
// Two small open-addressing hash maps for the tokenizer's hot path (linear probing, power-of-two
// tables):
//   FlatStringMap<V>: byte string -> V, keys copied into one arena (vocabularies, the per-call word cache);
//   PairMap<V>:       (int32, int32) -> V (BPE merges).

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace ra {

// 64-bit hash of a byte string: 8 bytes at a time, mixed as in MurmurHash3's finaliser.
inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (s.size() * 0xFF51AFD7ED558CCDull);
  const char* p = s.data();
  size_t n = s.size();
  while (n >= 8) {
    uint64_t k;
    std::memcpy(&k, p, 8);
    h = (h ^ (k * 0xC4CEB9FE1A85EC53ull)) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  uint64_t k = 0;
  std::memcpy(&k, p, n);
  h = (h ^ (k * 0xC4CEB9FE1A85EC53ull)) * 0x9E3779B97F4A7C15ull;
  h ^= h >> 32;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  return h;
}

template <typename V>
class FlatStringMap {
 public:
  size_t size() const { return size_; }

  // Inserts `key` or overwrites its value.
  void insert(std::string_view key, V value) { insert(key, hash_bytes(key), value); }
  // The same with `h` = hash_bytes(key) already computed.
  void insert(std::string_view key, uint64_t h, V value) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    Slot* s = probe(key, h);
    if (s->length == kEmpty) {
      s->hash = static_cast<uint32_t>(h >> 32);
      s->offset = static_cast<uint32_t>(arena_.size());
      s->length = static_cast<uint32_t>(key.size());
      arena_.append(key);
      ++size_;
    }
    s->value = value;
  }

  // The value of `key`, or nullptr.
  const V* find(std::string_view key) const { return find(key, hash_bytes(key)); }
  // The same with `h` = hash_bytes(key) already computed.
  const V* find(std::string_view key, uint64_t h) const {
    if (size_ == 0) return nullptr;
    const Slot* s = probe(key, h);
    return s->length == kEmpty ? nullptr : &s->value;
  }

  void clear() {
    slots_.clear();
    arena_.clear();
    size_ = 0;
  }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;
  struct Slot {
    uint32_t hash = 0;  // the hash's high 32 bits (the low bits pick the slot)
    uint32_t offset = 0;
    uint32_t length = kEmpty;
    V value{};
  };

  Slot* probe(std::string_view key, uint64_t h) const {
    const size_t mask = slots_.size() - 1;
    const auto tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.length == kEmpty) return const_cast<Slot*>(&s);
      if (s.hash == tag && s.length == key.size() && std::memcmp(arena_.data() + s.offset, key.data(), key.size()) == 0) {
        return const_cast<Slot*>(&s);
      }
    }
  }

  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
    const size_t mask = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.length == kEmpty) continue;
      size_t i = hash_bytes(std::string_view(arena_.data() + s.offset, s.length)) & mask;
      while (slots_[i].length != kEmpty) i = (i + 1) & mask;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;  // empty, or a power of two, at most half full
  std::string arena_;        // every key, back to back
  size_t size_ = 0;
};

template <typename V>
class PairMap {
 public:
  void insert(int32_t a, int32_t b, V value) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    const uint64_t key = pack(a, b);
    Slot* s = probe(key);
    if (s->key == kEmpty) {
      s->key = key;
      ++size_;
    }
    s->value = value;
  }
  const V* find(int32_t a, int32_t b) const {
    if (size_ == 0) return nullptr;
    const Slot* s = probe(pack(a, b));
    return s->key == kEmpty ? nullptr : &s->value;
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // no pair of non-negative ids packs to this
  struct Slot {
    uint64_t key = kEmpty;
    V value{};
  };
  static uint64_t pack(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    return k;
  }
  Slot* probe(uint64_t key) const {
    const size_t mask = slots_.size() - 1;
    for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.key == kEmpty || s.key == key) return const_cast<Slot*>(&s);
    }
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
    const size_t mask = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.key == kEmpty) continue;
      size_t i = mix(s.key) & mask;
      while (slots_[i].key != kEmpty) i = (i + 1) & mask;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;  // empty, or a power of two, at most 3/4 full
  size_t size_ = 0;
};

}  // namespace ra
