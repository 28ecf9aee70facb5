// libFuzzer target: a YAML run config (`ra generate --config`), read and validated. Any input gives a
// valid RunConfig or a ra::Error naming the file and the key.
#include <cstdint>

#include "common/error.h"
#include "launcher/config/run_config.h"
#include "tests/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = ra::fuzz::write_input(data, size, "run.yaml");
  try {
    const ra::RunConfig config = ra::load_run_config(path.string());
    ra::validate(config);
  } catch (const ra::Error&) {
  }
  return 0;
}
