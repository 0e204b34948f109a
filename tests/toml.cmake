# TOML parser: unit tests and the toml-test conformance suite (709 cases, all must pass).
mk_add_test(test_toml SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_toml.c LIBS mk_config TIMEOUT 120)

# run.sh prints "N passed, N failed" and exits 0 only when nothing failed. The runner counts any
# non-zero exit below 124 as a correct rejection of an invalid case, so in the sanitizer build make
# every sanitizer report exit with 134 (counted as a crash) instead of ASan's default 1: that way
# the 499 invalid documents also act as a fuzz corpus for ASan/UBSan/LSan.
add_test(NAME toml_conformance
         COMMAND bash ${MK_SHARED_DIR}/toml-test/run.sh ${CMAKE_BINARY_DIR}/toml-decode
         WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
set_tests_properties(toml_conformance PROPERTIES TIMEOUT 300 ENVIRONMENT
  "ASAN_OPTIONS=exitcode=134;UBSAN_OPTIONS=halt_on_error=1:exitcode=134:print_stacktrace=1;LSAN_OPTIONS=exitcode=134")
