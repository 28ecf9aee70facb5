# The UCX channel between forked processes (no mpirun needed, so it runs with the unit tests).
ra_add_gtest(ucx_channel_test unit SOURCES transport/ucx_channel_test.cpp LIBS ra_transport_ucx TIMEOUT 120)
