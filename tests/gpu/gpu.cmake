# GPU tests (label gpu): each kernel family and the CUDA backend against the CPU reference. They skip
# cleanly where no CUDA device is visible. Every op check adds a row to the table the binary prints.
add_library(ra_gpu_test_support STATIC gpu/gpu_test_support.cpp)
target_link_libraries(ra_gpu_test_support PUBLIC ra_common CUDA::cudart GTest::gtest)
target_include_directories(ra_gpu_test_support PUBLIC ${PROJECT_SOURCE_DIR})

# ra_add_gpu_test(NAME SOURCES... LIBS...)
function(ra_add_gpu_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ra_gpu_test_support ${ARG_LIBS} GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE
    RA_SHARED_MODELS_DIR="${RA_SHARED_MODELS_DIR}" RA_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${name} PROPERTIES LABELS gpu TIMEOUT 600 DISCOVERY_TIMEOUT 60)
endfunction()

# Every kernel family against its CPU reference, in one binary that prints one table of results
# (test-backend-ops style).
ra_add_gpu_test(backend_ops_gpu_test
  SOURCES gpu/merge_partials_gpu_test.cpp gpu/decode_attention_gpu_test.cpp gpu/prefill_attention_gpu_test.cpp
          gpu/gemv_gpu_test.cpp gpu/ops_gpu_test.cpp gpu/sampling_gpu_test.cpp
  LIBS ra_cuda_kernels ra_decode)

# The whole CUDA backend against the CPU backend (tiny models made by the tests) ...
ra_add_gpu_test(cuda_backend_gpu_test
  SOURCES gpu/cuda_backend_gpu_test.cpp
  LIBS ra_decode ra_test_support)
# ... and on the shared real models (skip when absent).
add_executable(cuda_model_gpu_test gpu/cuda_model_gpu_test.cpp)
target_link_libraries(cuda_model_gpu_test PRIVATE ra_gpu_test_support ra_launcher GTest::gtest_main)
target_compile_definitions(cuda_model_gpu_test PRIVATE RA_SHARED_MODELS_DIR="${RA_SHARED_MODELS_DIR}")
gtest_discover_tests(cuda_model_gpu_test PROPERTIES LABELS "gpu;model" TIMEOUT 600 DISCOVERY_TIMEOUT 60)

# The training lists the CUDA backend finds during an offloaded prefill (issue 16 item 2).
ra_add_gpu_test(train_lists_gpu_test
  SOURCES gpu/train_lists_gpu_test.cpp
  LIBS ra_cuda_backend)

# K and V coded on the GPU in the retrievers' forms (int8, bf16, float32) against the CPU's coders, bit
# for bit (issue 22 item 1).
ra_add_gpu_test(kv_rows_gpu_test
  SOURCES gpu/kv_rows_gpu_test.cpp
  LIBS ra_cuda_backend)
