// libFuzzer target: a .npy file as `ra bench retrieval` reads `ra dump-qkv`'s arrays. Any input gives
// an array whose data holds exactly the product of its shape, or a ra::Error.
#include <cstdint>

#include "common/error.h"
#include "common/npy.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = ra::fuzz::write_input(data, size, "array.npy");
  try {
    const ra::NpyArray a = ra::read_npy_f32(path);
    int64_t n = 1;
    for (const int64_t d : a.shape) n *= d;
    if (n != a.numel()) __builtin_trap();
  } catch (const ra::Error&) {
  }
  return 0;
}
