# Compiler flags shared by every target.
#
# The log-sum-exp merge (DESIGN §4) depends on IEEE inf/NaN semantics, so -ffast-math and -Ofast are
# refused outright rather than silently accepted from a user's CMAKE_CXX_FLAGS.

option(RA_BUILD_TESTS "Build the GoogleTest suites" ON)
set(RA_SANITIZE "" CACHE STRING "Sanitizers to build with: address,undefined | thread | empty")

set(CMAKE_CXX_FLAGS_RELEASE "-O3 -DNDEBUG" CACHE STRING "" FORCE)
set(CMAKE_CXX_FLAGS_RELWITHDEBINFO "-O3 -g -DNDEBUG" CACHE STRING "" FORCE)

foreach(var CMAKE_CXX_FLAGS CMAKE_CXX_FLAGS_RELEASE CMAKE_CXX_FLAGS_RELWITHDEBINFO CMAKE_CXX_FLAGS_DEBUG
            CMAKE_CUDA_FLAGS CMAKE_CUDA_FLAGS_RELEASE)
  if("${${var}}" MATCHES "-ffast-math|-Ofast|--use_fast_math")
    message(FATAL_ERROR "${var} contains fast-math ('${${var}}'): the partial-attention merge needs "
                        "IEEE inf/NaN handling (DESIGN §4). Remove it.")
  endif()
endforeach()

add_library(ra_compile_options INTERFACE)
target_compile_options(ra_compile_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wno-missing-field-initializers>)

if(RA_SANITIZE)
  target_compile_options(ra_compile_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${RA_SANITIZE} -fno-omit-frame-pointer>)
  target_link_options(ra_compile_options INTERFACE -fsanitize=${RA_SANITIZE})
  if(RA_SANITIZE MATCHES "address")  # plugins stay loaded, so LeakSanitizer can name their frames
    target_sources(ra_compile_options INTERFACE
      $<$<STREQUAL:$<TARGET_PROPERTY:TYPE>,EXECUTABLE>:${PROJECT_SOURCE_DIR}/scripts/sanitizers/keep_plugins.cpp>)
  endif()
endif()
