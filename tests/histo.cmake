# histo/ (the histology layer): tissue mask, patch grid, labels, HDF5 grids, patches with
# colour normalisation and dihedral transforms; references from tests/histo_ref.py (numpy, scipy,
# h5py); a phantom slide and mask (phantoms/).
if(TARGET mk_histo AND TARGET mk_phantoms)
  mk_add_test(test_histo SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_histo.c
              LIBS mk_histo mk_phantoms mk_io TIMEOUT 300)
  target_include_directories(test_histo PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_definitions(test_histo PRIVATE MK_TEST_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
endif()
