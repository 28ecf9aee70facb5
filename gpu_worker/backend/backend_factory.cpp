#include "gpu_worker/backend/backend.h"

#include "common/error.h"

#if RA_HAVE_CUDA_BACKEND
#include "gpu_worker/backend/cuda/cuda_backend.h"
#endif

namespace ra {

BackendKind parse_backend_kind(std::string_view name) {
  if (name == "auto") return BackendKind::kAuto;
  if (name == "cpu") return BackendKind::kCpu;
  if (name == "cuda") return BackendKind::kCuda;
  raise("unknown backend '{}': expected auto, cpu or cuda", name);
}

std::string_view name(BackendKind kind) {
  switch (kind) {
    case BackendKind::kAuto: return "auto";
    case BackendKind::kCpu: return "cpu";
    case BackendKind::kCuda: return "cuda";
  }
  return "?";
}

bool cuda_backend_available() {
#if RA_HAVE_CUDA_BACKEND
  return cuda_device_visible();
#else
  return false;
#endif
}

std::string gpu_pci_bus_id() {
#if RA_HAVE_CUDA_BACKEND
  return cuda_device_visible() ? cuda_pci_bus_id() : std::string();
#else
  return {};
#endif
}

BackendKind resolve_backend_kind(BackendKind kind) {
  if (kind == BackendKind::kAuto) return cuda_backend_available() ? BackendKind::kCuda : BackendKind::kCpu;
  if (kind == BackendKind::kCuda) {
#if RA_HAVE_CUDA_BACKEND
    RA_REQUIRE(cuda_device_visible(), "--backend cuda: no CUDA device is visible ({})", cuda_device_problem());
#else
    raise("--backend cuda: this build has no CUDA backend (nvcc was not found when it was configured)");
#endif
  }
  return kind;
}

std::unique_ptr<Backend> make_backend(BackendKind kind, const Model& model, const BackendOptions& options) {
  switch (resolve_backend_kind(kind)) {
#if RA_HAVE_CUDA_BACKEND
    case BackendKind::kCuda: return make_cuda_backend(model, options);
#endif
    default: return make_cpu_backend(model, options);
  }
}

}  // namespace ra
