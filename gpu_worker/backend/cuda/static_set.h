#pragma once
// Where a position's K/V lives on the GPU, and which cache slots a decode step attends over
// (DESIGN §3, StaticSetOptions in backend.h). Host and device code share these two functions.
//
// Full attention (window == 0): slot = position; a step at position p attends over slots [0, p].
// Static set (window W >= 1, sinks S): the layer's cache has S + W slots. Sinks keep their position;
// window positions rotate through the ring [S, S + W): slot(p) = S + (p − S) mod W. Because the sinks
// fill before the window starts, the valid slots at step p are always the prefix [0, min(p + 1, S + W)).
// The token evicted at step p (position p − W, when >= S) occupies the slot that p overwrites.

#include <cstdint>

#if defined(__CUDACC__)
#define RA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define RA_HOST_DEVICE inline
#endif

namespace ra::cuda {

RA_HOST_DEVICE int64_t cache_slot(int64_t position, int64_t sinks, int64_t window) {
  if (window == 0 || position < sinks) return position;
  return sinks + (position - sinks) % window;
}

RA_HOST_DEVICE int64_t valid_slots(int64_t position, int64_t sinks, int64_t window) {
  const int64_t n = position + 1;
  if (window == 0) return n;
  return n < sinks + window ? n : sinks + window;
}

// The position leaving the window at step `position`, or −1 when none does.
RA_HOST_DEVICE int64_t evicted_position(int64_t position, int64_t sinks, int64_t window) {
  if (window == 0) return -1;
  const int64_t e = position - window;
  return e >= sinks ? e : -1;
}

// Whether a static set decoded up to `now`, with a copy of its window kept at `base` (-1: none), can
// return to `position` (Backend::can_truncate_to): the window before it, [max(S, position - W), position),
// must lie below the base (in the copy, which holds [base - W, base)) or still in the live ring
// [now - W, now). Host code.
inline bool window_reachable(int64_t position, int64_t now, int64_t base, int64_t sinks, int64_t window) {
  if (position < 0 || position > now) return false;
  if (position == now) return true;
  if (base < 0 || position < base) return false;
  int64_t first_since_base = position - window > sinks ? position - window : sinks;
  if (base > first_since_base) first_since_base = base;
  return first_since_base >= position || first_since_base >= now - window;
}

// Positions [begin, end) as runs of consecutive slots: f(first position, its slot, count) once per run.
// Host code (copies of whole runs). A window's positions wrap the ring at most once per W of them.
template <class F>
void for_each_slot_run(int64_t begin, int64_t end, int64_t sinks, int64_t window, F&& f) {
  for (int64_t p = begin; p < end;) {
    const int64_t slot = cache_slot(p, sinks, window);
    const int64_t limit = window == 0 ? end : p < sinks ? sinks : sinks + window - slot + p;
    const int64_t count = (end < limit ? end : limit) - p;
    f(p, slot, count);
    p += count;
  }
}

}  // namespace ra::cuda
