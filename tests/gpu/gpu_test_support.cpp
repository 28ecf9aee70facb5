#include "tests/gpu/gpu_test_support.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>

namespace ra::gpu_test {

bool have_gpu() {
  static const bool present = [] {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  }();
  return present;
}

std::vector<__nv_bfloat16> to_bf16(std::span<const float> x) {
  std::vector<__nv_bfloat16> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = to_bf16(x[i]);
  return out;
}

std::vector<float> from_bf16(std::span<const __nv_bfloat16> x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = from_bf16(x[i]);
  return out;
}

std::vector<float> round_bf16(std::span<const float> x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = from_bf16(to_bf16(x[i]));
  return out;
}

template <>
std::vector<float> to_type<float>(std::span<const float> x) {
  return {x.begin(), x.end()};
}
template <>
std::vector<__nv_bfloat16> to_type<__nv_bfloat16>(std::span<const float> x) {
  return to_bf16(x);
}
template <>
std::vector<float> to_floats<float>(std::span<const float> x) {
  return {x.begin(), x.end()};
}
template <>
std::vector<float> to_floats<__nv_bfloat16>(std::span<const __nv_bfloat16> x) {
  return from_bf16(x);
}
template <>
const char* type_name<float>() {
  return "f32";
}
template <>
const char* type_name<__nv_bfloat16>() {
  return "bf16";
}

std::vector<float> random_normal(size_t n, uint64_t seed, float stddev, float mean) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> out(n);
  for (float& v : out) v = dist(rng);
  return out;
}

double nmse(std::span<const float> a, std::span<const float> r) {
  if (a.size() != r.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double ai = a[i], ri = r[i];
    if (!std::isfinite(ai) && !(std::isinf(ri) && ai == ri)) return std::numeric_limits<double>::infinity();
    if (!std::isfinite(ri)) continue;
    num += (ai - ri) * (ai - ri);
    den += ri * ri;
  }
  if (den == 0) return num == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return num / den;
}

double max_relative_error(std::span<const float> a, std::span<const float> r) {
  if (a.size() != r.size()) return std::numeric_limits<double>::infinity();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(r[i])) continue;
    if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - r[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(r[i])));
  }
  return scale == 0 ? diff : diff / scale;
}

namespace {

struct Row {
  std::string op, shape, dtype;
  double nmse, max_rel, tolerance;
  bool pass;
};

std::mutex g_mutex;
std::vector<Row>& rows() {
  static std::vector<Row> r;
  return r;
}

// Prints the table once every test has run.
class OpTablePrinter : public testing::Environment {
 public:
  void TearDown() override {
    std::lock_guard lock(g_mutex);
    if (rows().empty()) return;
    std::printf("\n%-22s %-52s %-5s %12s %12s %10s  %s\n", "op", "shape", "type", "nmse", "max_rel", "tol", "");
    int failed = 0;
    for (const Row& r : rows()) {
      std::printf("%-22s %-52s %-5s %12.3e %12.3e %10.1e  %s\n", r.op.c_str(), r.shape.c_str(), r.dtype.c_str(),
                  r.nmse, r.max_rel, r.tolerance, r.pass ? "OK" : "FAIL");
      failed += r.pass ? 0 : 1;
    }
    std::printf("%zu op checks, %d failed\n", rows().size(), failed);
  }
};

[[maybe_unused]] testing::Environment* const g_printer = testing::AddGlobalTestEnvironment(new OpTablePrinter);

}  // namespace

bool record_op(const std::string& op, const std::string& shape, const std::string& dtype, double nmse_value,
               double max_rel, double tolerance) {
  const bool pass = std::isfinite(nmse_value) && nmse_value <= tolerance;
  std::lock_guard lock(g_mutex);
  rows().push_back({op, shape, dtype, nmse_value, max_rel, tolerance, pass});
  return pass;
}

}  // namespace ra::gpu_test
