#pragma once
// The two ceilings every GPU figure is compared with (.library METHOD: "two numbers first"), measured on
// the card in hand rather than taken from a datasheet: device memory bandwidth (a large device-to-device
// copy, bytes read + written) and the dense bf16 matrix rate (cuBLASLt, 8192^3, random data).

#include <cstdint>
#include <string>

namespace ra::cuda {

struct DeviceCeilings {
  std::string device;          // cudaDeviceProp::name
  int sm_count = 0;
  int64_t memory_bytes = 0;    // total device memory
  double copy_gb_per_s = 0;    // median of 10 copies of 2 GiB, (read + write) / time
  double bf16_tflop_per_s = 0; // median of 10 products 8192 x 8192 x 8192, bf16 in, fp32 accumulate
};

DeviceCeilings measure_device_ceilings();

}  // namespace ra::cuda
