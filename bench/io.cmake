# io benchmarks: nifti-bench (read + write of a 512x512x300 int16 .nii.gz, medkd vs nibabel).
add_executable(nifti-bench ${CMAKE_CURRENT_SOURCE_DIR}/nifti_bench.c)
target_include_directories(nifti-bench PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(nifti-bench PRIVATE mk_io mk_core)
set_target_properties(nifti-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
