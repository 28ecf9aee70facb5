# The shared-memory Channel (transport/shm/): real processes (fork), so the tests also exercise
# liveness (killed and stopped peers) and /dev/shm cleanup. Only when Boost was found.
if(TARGET ra_transport_shm)
  ra_add_gtest(shm_channel_test unit SOURCES ${CMAKE_CURRENT_LIST_DIR}/shm_channel_test.cpp
               LIBS ra_transport_shm)
endif()
