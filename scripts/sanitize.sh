#!/usr/bin/env bash
# The test suite under one sanitizer (issue 20 item 5): builds a CPU-only tree (the sanitizers see no
# device code, and the GPU tests skip here anyway) with -DRA_SANITIZE into build-<kind>/, then runs
# ctest with every report fatal. The multi-process tests run sanitized ranks: mpirun passes the
# *SAN_OPTIONS below to them (local ranks inherit the environment).
#   usage: scripts/sanitize.sh asan|ubsan|tsan [ctest arguments, e.g. -L mpi or -R Shm]
# Environment: RA_SANITIZE_JOBS (ctest -j, default: the cores); RA_SANITIZE_CC=gcc|clang, the compiler
# (default: clang for tsan, gcc for asan and ubsan). A clang tree is build-<kind>-clang/ and uses
# clang-14, whose -fopenmp links LLVM's libomp: under tsan its TSan tool (libarcher, loaded through
# OMP_TOOL_LIBRARIES) tells TSan about the OpenMP barriers, so the teams run at their usual sizes.
# Suppressions (scripts/sanitizers/): leaks inside Open MPI / UCX / hwloc start-up that their own
# teardown leaves (not ours); races TSan reports inside uninstrumented libgomp and libucs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kind=${1:?usage: $0 asan|ubsan|tsan [ctest arguments]}
shift
case "$kind" in
  asan)  flags=address ;;
  ubsan) flags=undefined ;;
  tsan)  flags=thread ;;
  *) echo "unknown sanitizer '$kind' (asan, ubsan or tsan)" >&2; exit 2 ;;
esac
cc=${RA_SANITIZE_CC:-$([[ $kind == tsan ]] && echo clang || echo gcc)}
case "$cc" in
  gcc)   build=$root/build-$kind ;;
  clang) build=$root/build-$kind-clang; export CC=clang-14 CXX=clang++-14 ;;
  *) echo "unknown RA_SANITIZE_CC '$cc' (gcc or clang)" >&2; exit 2 ;;
esac
supp=$root/scripts/sanitizers
# fast_unwind_on_malloc=0: an allocation inside libc (vasprintf, no frame pointers) must still show its
# caller, or no suppression can name the library that leaked it.
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:check_initialization_order=1:strict_string_checks=1:fast_unwind_on_malloc=0"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$supp/tsan.supp"
# TSan cannot see libgomp's barriers (Debian's libgomp is not instrumented): an OpenMP team reading its
# master's stack reports as a race with no second stack to suppress. With gcc, one thread per team by
# default; code that asks for its own team size (GraphBuildParams::threads) still reports
# (docs/reliability.md). With clang, libarcher annotates libomp's barriers, tasks and locks for TSan
# (mpirun passes OMP_TOOL_LIBRARIES to the local ranks like the rest of the environment).
if [[ $kind == tsan && $cc == gcc ]]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
elif [[ $kind == tsan ]]; then
  export OMP_TOOL_LIBRARIES=${OMP_TOOL_LIBRARIES:-/usr/lib/llvm-14/lib/libarcher.so}
fi
# UCX's memory hooks (its own malloc/mmap interception) and TSan's interceptors cannot both run: every UCX
# process segfaulted at start under TSan until they were off. UCX works without them (it registers memory
# as it goes).
[[ $kind == tsan ]] && export UCX_MEM_MALLOC_HOOKS=no UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_EVENTS=no
# TSan runs the code 5-15x slower: the tests that bound how fast a dead or silent peer is reported (2 s
# promises, tests/mpi/pipeline_mpi_test.sh; liveness timeouts in tests/support/sanitizer.h) stretch their
# bounds by this factor under it. Races are what a TSan run checks; the bounds themselves are asserted
# unstretched by the suite as CI runs it.
[[ $kind == tsan ]] && export RA_TEST_DEADLINE_SCALE=${RA_TEST_DEADLINE_SCALE:-3}
RA_BUILD_DIR=$build RA_BUILD_TYPE=RelWithDebInfo bash "$root/scripts/build.sh" \
  -DRA_SANITIZE="$flags" -DRA_ENABLE_CUDA=OFF
echo "sanitize.sh: $kind ($cc) build in $build; running ctest $*"
ctest --test-dir "$build" --output-on-failure -j"${RA_SANITIZE_JOBS:-$(nproc)}" -LE gpu "$@"
