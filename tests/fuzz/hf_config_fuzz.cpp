// libFuzzer target: a checkpoint's config.json. Any input gives a ModelConfig or a ra::Error.
#include <cstdint>

#include "common/error.h"
#include "gpu_worker/model/model_config.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = ra::fuzz::write_input(data, size, "config.json");
  try {
    (void)ra::parse_hf_config(path);
  } catch (const ra::Error&) {
  }
  return 0;
}
