# nn + models: op gradients vs finite differences, engine behaviour, U-Net and checkpoints, golden
# check of the reference U-Nets against PyTorch values (peers/golden/*.h5).
mk_add_test(test_nn_grad SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_nn_grad.c LIBS mk_nn TIMEOUT 120)
mk_add_test(test_nn_blocks SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_nn_blocks.c LIBS mk_nn
            TIMEOUT 60)
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test_nn.c)
  mk_add_test(test_nn SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_nn.c LIBS mk_nn mk_models TIMEOUT 120)
endif()
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test_models.c)
  mk_add_test(test_models SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_models.c LIBS mk_models
              TIMEOUT 120)
endif()
foreach(d 2 3)
  add_test(NAME unet_golden_${d}d
           COMMAND unet-bench --check ${MK_SHARED_DIR}/peers/golden/unet${d}d_golden.h5 --threads 2
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(unet_golden_${d}d PROPERTIES TIMEOUT 300)
endforeach()
# The 2D check (482k parameters, 2x64x64, reference-speed kernels under ASan: minutes) is too slow
# for the sanitizer build; the 3D check is its faster sibling there.
set_tests_properties(unet_golden_2d PROPERTIES LABELS no-sanitize)
