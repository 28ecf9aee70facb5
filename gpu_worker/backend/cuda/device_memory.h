#pragma once
// Owning device and pinned-host arrays for the CUDA backend. Every byte the backend takes from the GPU
// goes through DeviceBuffer, so device_memory_stats() reports the backend's current and peak usage
// (the figure `ra bench decode` prints), independent of other users of the card.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace ra::cuda {

struct DeviceMemoryStats {
  int64_t current_bytes = 0;
  int64_t peak_bytes = 0;
};
DeviceMemoryStats device_memory_stats();
void reset_peak_device_memory();  // peak := current

// Raw allocation with accounting; throws ra::Error naming `what` and the size when the GPU is full.
void* device_allocate(size_t bytes, const char* what);
void device_free(void* ptr, size_t bytes) noexcept;
void* pinned_allocate(size_t bytes, const char* what);
void pinned_free(void* ptr) noexcept;

// n elements of T in device memory (uninitialised).
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t n, const char* what) : ptr_(static_cast<T*>(device_allocate(n * sizeof(T), what))), n_(n) {}
  ~DeviceBuffer() { device_free(ptr_, n_ * sizeof(T)); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      device_free(ptr_, n_ * sizeof(T));
      ptr_ = std::exchange(o.ptr_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  void reset() { *this = DeviceBuffer(); }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

// n elements of T in page-locked host memory (for asynchronous copies).
template <typename T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(size_t n, const char* what) : ptr_(static_cast<T*>(pinned_allocate(n * sizeof(T), what))), n_(n) {}
  ~PinnedBuffer() { pinned_free(ptr_); }
  PinnedBuffer(PinnedBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
      pinned_free(ptr_);
      ptr_ = std::exchange(o.ptr_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  T* get() const { return ptr_; }
  T& operator[](size_t i) const { return ptr_[i]; }
  size_t size() const { return n_; }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

}  // namespace ra::cuda
