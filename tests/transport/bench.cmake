# `ra bench transport` end to end: real ranks under mpirun over every transport this build has, few
# iterations. Checks the benchmark's plumbing (every row present, sane percentiles, exact byte counts,
# no shm segment left behind), not a timing target.
if(TARGET ra-bench-transport)
  set(_ra_bench_transports mpi)
  if(TARGET ra_transport_shm)
    list(PREPEND _ra_bench_transports shm)
  endif()
  if(TARGET ra_transport_ucx)
    list(APPEND _ra_bench_transports ucx)
  endif()
  list(JOIN _ra_bench_transports "," _ra_bench_transports)
  add_test(NAME bench_transport_cli_test
           COMMAND ${CMAKE_COMMAND} -E env RA=$<TARGET_FILE:ra> TRANSPORTS=${_ra_bench_transports}
                   BENCH=$<TARGET_FILE:ra-bench-transport>
                   bash ${CMAKE_CURRENT_LIST_DIR}/../cli/bench_transport_cli_test.sh)
  set_tests_properties(bench_transport_cli_test PROPERTIES LABELS mpi TIMEOUT 300)
endif()
