#pragma once
// Address space reserved up front for an arena that grows in place (RowArena, GraphAdjacency's records).
//
// A large reservation is aligned to 2 MiB and advised for transparent huge pages (MADV_HUGEPAGE), and its
// owner makes it usable in whole 2 MiB steps, so the kernel backs it with huge pages at the first touch.
// A decode search reads rows at random across tens of GiB: with 4 KiB pages nearly every row costs a TLB
// miss whose page walk itself misses the cache (32 MiB of page tables per 16 GiB); with 2 MiB pages the
// tables are 512 times smaller. RA_HUGE_PAGES=0 in the environment turns the advice off (to measure it).

#include <cstddef>

namespace ra {

class AddressReservation {
 public:
  // Reservations of at least this many bytes are huge-page advised.
  static constexpr size_t kHugeMin = size_t{4} << 20;
  static constexpr size_t kHugePage = size_t{2} << 20;

  AddressReservation() = default;
  // bytes > 0. usable: readable and writable from the start (pages backed lazily); otherwise PROT_NONE
  // until make_usable(). Throws ra::Error (naming `what`) when the system refuses the address space.
  AddressReservation(size_t bytes, bool usable, const char* what);
  ~AddressReservation();
  AddressReservation(AddressReservation&& o) noexcept;
  AddressReservation& operator=(AddressReservation&& o) noexcept;
  AddressReservation(const AddressReservation&) = delete;
  AddressReservation& operator=(const AddressReservation&) = delete;

  std::byte* data() const { return base_; }
  size_t size() const { return size_; }  // bytes reserved: those asked, rounded up to the page size
  bool huge() const { return huge_; }
  // The step a growing owner should make memory usable in: 2 MiB when huge, else 256 KiB.
  size_t grow_step() const { return huge_ ? kHugePage : (size_t{256} << 10); }
  // Makes bytes [offset, offset + bytes) readable and writable. Throws ra::Error on failure.
  void make_usable(size_t offset, size_t bytes);
  // For an owner that grows from the start: bytes [0, usable) are usable; makes [0, end) usable in whole
  // grow_step()s (capped at size()) and returns the new usable extent.
  size_t grow(size_t usable, size_t end);

 private:
  std::byte* base_ = nullptr;
  size_t size_ = 0;
  bool huge_ = false;
};

// Whether huge-page advice is on for this process (RA_HUGE_PAGES, default on).
bool huge_pages_enabled();

}  // namespace ra
