# unet-bench: reference U-Net throughput (peer-compatible JSON) and golden check.
if(TARGET mk_models)
  add_executable(unet-bench ${CMAKE_CURRENT_SOURCE_DIR}/unet_bench.c)
  target_link_libraries(unet-bench PRIVATE mk_models mk_nn mk_core)
  set_target_properties(unet-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
endif()
