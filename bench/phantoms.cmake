# phantoms-bench: generation time and the non-learned difficulty check (best threshold Dice).
if(TARGET mk_phantoms)
  add_executable(phantoms-bench ${CMAKE_CURRENT_SOURCE_DIR}/phantoms_bench.c)
  target_link_libraries(phantoms-bench PRIVATE mk_phantoms mk_io mk_core)
  set_target_properties(phantoms-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
endif()
