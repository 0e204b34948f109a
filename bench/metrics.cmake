# metrics-bench: `pipeline eval` end to end on a 512x512x300 .nii.gz pair, plus the metric part alone.
if(TARGET mk_metrics AND TARGET mk_io AND TARGET pipeline)
  add_executable(metrics-bench ${CMAKE_CURRENT_SOURCE_DIR}/metrics_bench.c)
  target_link_libraries(metrics-bench PRIVATE mk_metrics mk_io mk_core)
  set_target_properties(metrics-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
  add_dependencies(metrics-bench pipeline)
endif()
