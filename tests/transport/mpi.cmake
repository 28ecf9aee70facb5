# The MPI channel between two ranks under mpirun. Its own main() initialises MPI, so it is not an
# ra_add_gtest (whose test discovery would run the binary outside mpirun).
add_executable(mpi_channel_test transport/mpi_channel_test.cpp)
target_link_libraries(mpi_channel_test PRIVATE ra_transport_mpi GTest::gtest)
# Open MPI refuses root and more ranks than cores unless told; environment variables rather than
# --allow-run-as-root / --oversubscribe keep the command valid for other MPI launchers.
add_test(NAME mpi_channel_test
         COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${MPIEXEC_PREFLAGS}
                 $<TARGET_FILE:mpi_channel_test> ${MPIEXEC_POSTFLAGS})
# RESOURCE_LOCK mpirun: its ranks' vader segments live in /dev/shm while it runs, where the kill and
# multi-host tests (which take the lock) count what a job leaves behind.
set_tests_properties(mpi_channel_test PROPERTIES LABELS mpi TIMEOUT 120 RESOURCE_LOCK mpirun ENVIRONMENT
  "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1")
