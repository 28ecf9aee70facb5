# The OpenAI-compatible server (issue 18), included from tests/CMakeLists.txt.
#   serve_unit_test:      schemas, chat templates, SSE, the queue and other parts (no sockets)
#   serve_engine_test:    the in-process engine and Backend::truncate on the CPU backend
#   serve_server_test:    the HTTP server in this process over real sockets, with a scripted engine
#   serve_pipeline_test:  the worker rank's engine over retriever services on threads (contexts, rewinds,
#                         saved contexts, a retriever that leaves)
#   serve_http_test:      the real ra-serve-inproc process, checked with curl (errors, contexts, metrics, 429,
#                         cancellation, chat on a tiny Llama-3-style checkpoint)
#   serve_openai_client_test: the same process driven by OpenAI's npm client 6.x (pinned in
#                         tests/serve/package-lock.json, installed into the build tree at test time; skips
#                         with exit code 77 without node, npm or the registry)
#   serve_mpi_*:          `ra serve` / `ra prefill` as mpirun jobs with real retriever ranks (label mpi)

add_library(ra_serve_test_support STATIC serve/tiny_chat_model.cpp)
target_link_libraries(ra_serve_test_support PUBLIC ra_test_support ra_model)

ra_add_gtest(serve_unit_test unit
  SOURCES serve/openai_schema_test.cpp serve/chat_template_test.cpp serve/serve_parts_test.cpp
          serve/serve_spec_test.cpp
  LIBS ra_serve ra_serve_test_support)
ra_add_gtest(serve_engine_test unit SOURCES serve/inproc_engine_test.cpp LIBS ra_serve)
ra_add_gtest(serve_server_test unit SOURCES serve/server_test.cpp LIBS ra_serve TIMEOUT 120)
ra_add_gtest(serve_pipeline_test unit SOURCES serve/pipeline_engine_test.cpp LIBS ra_serve ra_retriever_service
             TIMEOUT 120)

add_executable(ra-serve-test-model serve/write_test_model.cpp)
target_link_libraries(ra-serve-test-model PRIVATE ra_serve_test_support)

add_test(NAME serve_http_test
         COMMAND ${CMAKE_COMMAND} -E env SERVE=$<TARGET_FILE:ra-serve-inproc>
                 MAKE_MODEL=$<TARGET_FILE:ra-serve-test-model>
                 bash ${CMAKE_CURRENT_SOURCE_DIR}/serve/serve_http_test.sh)
set_tests_properties(serve_http_test PROPERTIES LABELS unit TIMEOUT 300)
add_test(NAME serve_openai_client_test
         COMMAND ${CMAKE_COMMAND} -E env SERVE=$<TARGET_FILE:ra-serve-inproc>
                 MAKE_MODEL=$<TARGET_FILE:ra-serve-test-model> CACHE=${PROJECT_BINARY_DIR}/serve-client
                 bash ${CMAKE_CURRENT_SOURCE_DIR}/serve/openai_client_test.sh)
set_tests_properties(serve_openai_client_test PROPERTIES LABELS unit TIMEOUT 300 SKIP_RETURN_CODE 77)

# `ra serve` under mpirun with real retriever ranks (serve_mpi_test.sh): the npm client and curl against
# it, context reuse, a killed retriever, a restarted job, saved contexts; needle-byte-13m in retrieval mode
# when present.
if(TARGET ra-gpu-worker)
  foreach(part api killed restarted saved needle)
    add_test(NAME serve_mpi_${part}
             COMMAND ${CMAKE_COMMAND} -E env RA=$<TARGET_FILE:ra> MAKE_MODEL=$<TARGET_FILE:ra-serve-test-model>
                     CACHE=${PROJECT_BINARY_DIR}/serve-client MODELS=${RA_SHARED_MODELS_DIR}
                     bash ${CMAKE_CURRENT_SOURCE_DIR}/serve/serve_mpi_test.sh ${part})
    set_tests_properties(serve_mpi_${part} PROPERTIES LABELS mpi TIMEOUT 300 SKIP_RETURN_CODE 77
                         RESOURCE_LOCK mpirun)
  endforeach()
  set_tests_properties(serve_mpi_needle PROPERTIES LABELS "mpi;model")
endif()
