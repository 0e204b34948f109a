# toml-bench: parse time of a generated ~2 MB config (median of several runs) and MB/s.
add_executable(toml-bench ${CMAKE_CURRENT_SOURCE_DIR}/toml_bench.c)
target_link_libraries(toml-bench PRIVATE mk_config mk_core)
set_target_properties(toml-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
