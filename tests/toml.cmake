# TOML parser: unit tests and the toml-test conformance suite (709 cases, all must pass).
mk_add_test(test_toml SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_toml.c LIBS mk_config TIMEOUT 120)

# run.sh prints "N passed, N failed" and exits 0 only when nothing failed.
add_test(NAME toml_conformance
         COMMAND bash ${MK_SHARED_DIR}/toml-test/run.sh ${CMAKE_BINARY_DIR}/toml-decode
         WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
set_tests_properties(toml_conformance PROPERTIES TIMEOUT 300)
