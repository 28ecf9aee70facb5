#include "common/address_reservation.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "common/error.h"

namespace ra {
namespace {

size_t round_up(size_t bytes, size_t step) { return (bytes + step - 1) / step * step; }

}  // namespace

bool huge_pages_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("RA_HUGE_PAGES");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

AddressReservation::AddressReservation(size_t bytes, bool usable, const char* what) {
  RA_REQUIRE(bytes > 0, "{}: an empty address reservation", what);
  huge_ = bytes >= kHugeMin && huge_pages_enabled();
  const size_t align = huge_ ? kHugePage : size_t{4096};
  size_ = round_up(bytes, align);
  // Over-reserve by one alignment, then give back the ends, so base_ starts on a 2 MiB boundary.
  const size_t slack = huge_ ? align : 0;
  const int prot = usable ? PROT_READ | PROT_WRITE : PROT_NONE;
  void* p = mmap(nullptr, size_ + slack, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  RA_REQUIRE(p != MAP_FAILED, "{}: cannot reserve {} bytes of address space: {}", what, size_ + slack,
             std::strerror(errno));
  auto* raw = static_cast<std::byte*>(p);
  base_ = raw;
  if (huge_) {
    const auto addr = reinterpret_cast<uintptr_t>(raw);
    base_ = reinterpret_cast<std::byte*>(round_up(addr, align));
    const size_t head = static_cast<size_t>(base_ - raw);
    if (head > 0) munmap(raw, head);
    if (slack - head > 0) munmap(base_ + size_, slack - head);
    // Advice only: a kernel without transparent huge pages keeps 4 KiB pages and everything still works.
    (void)madvise(base_, size_, MADV_HUGEPAGE);
  }
}

AddressReservation::~AddressReservation() {
  if (base_ != nullptr) munmap(base_, size_);
}

AddressReservation::AddressReservation(AddressReservation&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      huge_(o.huge_) {}

AddressReservation& AddressReservation::operator=(AddressReservation&& o) noexcept {
  if (this != &o) {
    if (base_ != nullptr) munmap(base_, size_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    huge_ = o.huge_;
  }
  return *this;
}

void AddressReservation::make_usable(size_t offset, size_t bytes) {
  RA_ASSERT(offset + bytes <= size_);
  if (bytes == 0) return;
  RA_REQUIRE(mprotect(base_ + offset, bytes, PROT_READ | PROT_WRITE) == 0,
             "cannot make {} bytes of reserved address space usable: {}", bytes, std::strerror(errno));
}

size_t AddressReservation::grow(size_t usable, size_t end) {
  if (end <= usable) return usable;
  const size_t target = std::min(size_, round_up(end, grow_step()));
  make_usable(usable, target - usable);
  return target;
}

}  // namespace ra
