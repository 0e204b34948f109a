# multiclass: class/label mapping, class-index training slices, argmax inference with label
# values, largest component per structure, per-structure evaluate reports and summaries.
if(TARGET mk_stages AND TARGET mk_phantoms)
  mk_add_test(test_multiclass SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_multiclass.c
              LIBS mk_stages mk_phantoms mk_models mk_nn mk_io mk_report TIMEOUT 300)
  target_include_directories(test_multiclass PRIVATE ${CMAKE_SOURCE_DIR})
endif()
