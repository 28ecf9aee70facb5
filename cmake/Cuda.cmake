# CUDA is optional: when nvcc is found (on PATH, via CUDACXX, or at /usr/local/cuda) the CUDA sources
# are compiled for sm_90 by default. Nothing CUDA-specific is needed to build or test on the CPU.

option(RA_ENABLE_CUDA "Compile CUDA sources when nvcc is found" ON)
set(RA_HAVE_CUDA OFF)

if(RA_ENABLE_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    # CMake 3.25 does not know nvcc's C++20 flag.
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION -std=c++20)
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION -std=c++20)
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(CMAKE_CUDA_FLAGS_RELEASE "-O3 -DNDEBUG" CACHE STRING "" FORCE)
    find_package(CUDAToolkit REQUIRED)
    set(RA_HAVE_CUDA ON)
  endif()
endif()
