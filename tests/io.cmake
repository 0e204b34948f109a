# io core: image type, NIfTI, HDF5, manifests, geometry operations, CLI info/convert.
mk_add_test(test_io_nifti SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_io_nifti.c LIBS mk_io TIMEOUT 120)
target_include_directories(test_io_nifti PRIVATE ${CMAKE_SOURCE_DIR})
