# stages-bench: per-network training step times of the CMEDL stage.
if(TARGET mk_stages)
  add_executable(stages-bench ${CMAKE_CURRENT_SOURCE_DIR}/stages_bench.c)
  target_include_directories(stages-bench PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(stages-bench PRIVATE mk_stages mk_models mk_nn mk_core)
  set_target_properties(stages-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
endif()
