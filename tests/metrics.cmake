# metrics: the metric library against hand-derived cases; `pipeline eval` end to end.
if(TARGET mk_metrics)
  mk_add_test(test_metrics SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_metrics.c LIBS mk_metrics TIMEOUT 120)
endif()
if(TARGET mk_metrics AND TARGET mk_report AND TARGET pipeline)
  mk_add_test(test_eval SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_eval.c LIBS mk_metrics TIMEOUT 300)
  add_dependencies(test_eval pipeline)
endif()
