#include "gpu_worker/backend/cuda/gemm.h"

#include "common/error.h"
#include "gpu_worker/backend/cuda/cuda_check.h"

#define RA_CUBLAS_CHECK(stmt)                                                                              \
  do {                                                                                                     \
    const cublasStatus_t ra_status_ = (stmt);                                                              \
    if (ra_status_ != CUBLAS_STATUS_SUCCESS) {                                                             \
      ::ra::raise("cuBLAS error {} ({}) in '{}' at {}:{}", cublasLtGetStatusName(ra_status_),              \
                  cublasLtGetStatusString(ra_status_), #stmt, __FILE__, __LINE__);                        \
    }                                                                                                      \
  } while (0)

namespace ra::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;

cudaDataType_t cuda_type(DType t) { return t == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF; }

// The largest power of two (at most 256) dividing every address: row offsets into activation buffers
// need not be 256-byte aligned, which cuBLASLt's heuristic otherwise assumes.
int common_alignment(const void* a, const void* b, const void* c) {
  const auto bits = reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b) | reinterpret_cast<uintptr_t>(c);
  int align = 256;
  while (align > 1 && (bits & static_cast<uintptr_t>(align - 1)) != 0) align /= 2;
  return align;
}

}  // namespace

// Column-major view of the row-major product: y^T [n][m] = w [n][k] · x^T [k][m]. cuBLASLt's A is w
// stored as a k x n column-major matrix (ld k) used transposed, B is x as k x m (ld k), C/D is y as
// n x m (ld n): the "TN" layout every library tunes best.
struct Gemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  float beta = 0;

  ~Plan() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

Gemm::Gemm() : workspace_(kWorkspaceBytes, "cuBLASLt workspace") { RA_CUBLAS_CHECK(cublasLtCreate(&handle_)); }

Gemm::~Gemm() {
  plans_.clear();
  if (handle_) cublasLtDestroy(handle_);
}

const Gemm::Plan& Gemm::plan(DType dtype, int64_t m, int64_t n, int64_t k, bool accumulate, int alignment) {
  const Key key{static_cast<int>(dtype), m, n, k, accumulate, alignment};
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  auto p = std::make_unique<Plan>();
  p->beta = accumulate ? 1.0f : 0.0f;
  RA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  RA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof(transa)));
  RA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof(transb)));
  const cudaDataType_t in = cuda_type(dtype);
  RA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, in, static_cast<uint64_t>(k), static_cast<uint64_t>(n), k));
  RA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, in, static_cast<uint64_t>(k), static_cast<uint64_t>(m), k));
  RA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, static_cast<uint64_t>(n), static_cast<uint64_t>(m), n));

  cublasLtMatmulPreference_t pref = nullptr;
  RA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const size_t ws = workspace_.bytes();
  RA_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  const auto align = static_cast<uint32_t>(alignment);
  for (const auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    RA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align)));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(handle_, p->op, p->a, p->b, p->c, p->c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  RA_REQUIRE(status == CUBLAS_STATUS_SUCCESS && found > 0,
             "cuBLASLt has no algorithm for y[{}][{}] {}= x[{}][{}] . w[{}][{}]^T in {} ({})", m, n,
             accumulate ? "+" : "", m, k, n, k, dtype_name(dtype), cublasLtGetStatusString(status));
  p->algo = result.algo;
  return *plans_.emplace(key, std::move(p)).first->second;
}

template <typename T>
void Gemm::run(const T* x, const T* w, float* y, int64_t m, int64_t n, int64_t k, bool accumulate,
               cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  const Plan& p = plan(dtype_of<T>(), m, n, k, accumulate, common_alignment(x, w, y));
  const float alpha = 1.0f;
  RA_CUBLAS_CHECK(cublasLtMatmul(handle_, p.op, &alpha, w, p.a, x, p.b, &p.beta, y, p.c, y, p.c, &p.algo,
                                 workspace_.get(), workspace_.bytes(), stream));
}

template void Gemm::run<float>(const float*, const float*, float*, int64_t, int64_t, int64_t, bool, cudaStream_t);
template void Gemm::run<bfloat16>(const bfloat16*, const bfloat16*, float*, int64_t, int64_t, int64_t, bool,
                                  cudaStream_t);

}  // namespace ra::cuda
