# Third-party dependencies, all from Debian packages (scripts/setup.sh installs them).
#
# Required for every build: threads, OpenMP, OpenBLAS, nlohmann_json, CLI11, fmt, yaml-cpp.
# Detected here for the retriever and transport: MPI, UCX, Boost.Interprocess, FAISS, hwloc. Each sets
# RA_HAVE_<NAME> so a CPU-only build without them still configures.

find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(fmt REQUIRED)
find_package(yaml-cpp REQUIRED)  # run configs (launcher/config/config_yaml.cpp); target yaml-cpp

set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
find_path(RA_CBLAS_INCLUDE_DIR cblas.h
  HINTS /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas /usr/include
  REQUIRED)
add_library(ra_blas INTERFACE)
target_link_libraries(ra_blas INTERFACE ${BLAS_LIBRARIES})
target_include_directories(ra_blas SYSTEM INTERFACE ${RA_CBLAS_INCLUDE_DIR})

find_package(MPI COMPONENTS CXX)
set(RA_HAVE_MPI ${MPI_CXX_FOUND})

find_package(Boost 1.74)
set(RA_HAVE_BOOST ${Boost_FOUND})

if(NOT TARGET ucx::ucp)  # UCX's CMake config has no include guard
  find_package(ucx QUIET)
endif()
set(RA_HAVE_UCX ${ucx_FOUND})

find_package(faiss QUIET)  # needs OpenMP found first (Debian's faiss target links it)
set(RA_HAVE_FAISS ${faiss_FOUND})

find_package(PkgConfig)
if(PkgConfig_FOUND)
  pkg_check_modules(HWLOC IMPORTED_TARGET hwloc)
endif()
set(RA_HAVE_HWLOC ${HWLOC_FOUND})

if(RA_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()

message(STATUS "dependencies: MPI ${RA_HAVE_MPI}, UCX ${RA_HAVE_UCX}, Boost ${RA_HAVE_BOOST}, "
               "FAISS ${RA_HAVE_FAISS}, hwloc ${RA_HAVE_HWLOC}")
