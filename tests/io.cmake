# io core: image type, NIfTI, HDF5, manifests, geometry operations, CLI info/convert.
mk_add_test(test_io_nifti SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_io_nifti.c LIBS mk_io TIMEOUT 120)
target_include_directories(test_io_nifti PRIVATE ${CMAKE_SOURCE_DIR})
mk_add_test(test_io_hdf5 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_io_hdf5.c LIBS mk_io TIMEOUT 60)
target_include_directories(test_io_hdf5 PRIVATE ${CMAKE_SOURCE_DIR})
mk_add_test(test_io_manifest SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_io_manifest.c LIBS mk_io TIMEOUT 60)
target_include_directories(test_io_manifest PRIVATE ${CMAKE_SOURCE_DIR})
mk_add_test(test_io_resample SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_io_resample.c LIBS mk_io TIMEOUT 60)
target_include_directories(test_io_resample PRIVATE ${CMAKE_SOURCE_DIR})
# End-to-end `pipeline info/convert`; skips itself when the pipeline binary is not built.
mk_add_test(test_io_cli SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_io_cli.c LIBS mk_io TIMEOUT 60)
target_include_directories(test_io_cli PRIVATE ${CMAKE_SOURCE_DIR})
if(TARGET pipeline)
  add_dependencies(test_io_cli pipeline)
endif()
# Writes that run out of space (ulimit -f): one clear error, nothing half-written, resumable.
if(TARGET pipeline)
  add_test(NAME full_disk COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/full_disk_test.sh
           $<TARGET_FILE:pipeline>)
  set_tests_properties(full_disk PROPERTIES TIMEOUT 300)
endif()
