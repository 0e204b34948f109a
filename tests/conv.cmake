# Convolution kernels (nn/conv*.c): references vs independent formulations, fast vs reference.
# test_conv runs the full random sweep (too slow under ASan); test_conv_quick is its sanitizer-
# friendly sibling with fewer random shapes.
mk_add_test(test_conv SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_conv.c LIBS mk_nn m TIMEOUT 120)
set_tests_properties(test_conv PROPERTIES LABELS no-sanitize)
mk_add_test(test_conv_quick SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_conv.c LIBS mk_nn m TIMEOUT 240
            ARGS --quick)
