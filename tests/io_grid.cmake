mk_add_test(test_io_grid SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_io_grid.c LIBS mk_io TIMEOUT 60)
target_include_directories(test_io_grid PRIVATE ${CMAKE_SOURCE_DIR})
