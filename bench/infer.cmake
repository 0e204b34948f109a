# infer-bench: `pipeline infer` on a 512x512x200 CT (read, model load, mk_infer_volume, write),
# the share outside the network's forward passes, peak RSS against 3 x float32 volume + model;
# --compare adds unet-bench --mode volume2d and the PyTorch peer in the same run.
if(TARGET mk_stages)
  add_executable(infer-bench ${CMAKE_CURRENT_SOURCE_DIR}/infer_bench.c)
  target_include_directories(infer-bench PRIVATE ${CMAKE_SOURCE_DIR})
  target_compile_definitions(infer-bench PRIVATE MK_TORCH_PEER="${MK_SHARED_DIR}/peers/torch_unet.py")
  target_link_libraries(infer-bench PRIVATE mk_stages mk_models mk_nn mk_io mk_core m)
  set_target_properties(infer-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
endif()
