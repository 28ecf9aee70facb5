#pragma once
// The spin-wait hint of the channels' bounded spins before they block (shm futex, UCX event fd).

namespace ra::transport {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace ra::transport
