// libFuzzer target: a safetensors file (8-byte header length, JSON header, data). Any input must give a
// SafetensorsFile whose every tensor view lies inside the mapping, or a ra::Error; reading every byte of
// every view lets ASan catch a view that does not.
#include <cstdint>

#include "common/error.h"
#include "gpu_worker/model/safetensors.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = ra::fuzz::write_input(data, size, "model.safetensors");
  try {
    const ra::SafetensorsFile file(path);
    unsigned sum = 0;
    for (const auto& [name, view] : file.tensors()) {
      for (const std::byte b : view.data) sum += static_cast<unsigned>(b);
      if (view.numel() < 0) __builtin_trap();
    }
    (void)sum;
  } catch (const ra::Error&) {
  }
  return 0;
}
