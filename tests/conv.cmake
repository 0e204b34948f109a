# Convolution kernels (nn/conv*.c): references vs independent formulations, fast vs reference.
mk_add_test(test_conv SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_conv.c LIBS mk_nn m TIMEOUT 120)
