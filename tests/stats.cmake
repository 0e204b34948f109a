# report statistics (report/stats.c): hand-derived cases (test_stats) and, through the test-only
# stats-tool, seeded datasets against numpy/scipy and independent Python references
# (tests/stats_ref.py: Wilcoxon exact and approximate, quantiles, describe, Holm, bootstrap).
if(TARGET mk_report)
  mk_add_test(test_stats SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_stats.c LIBS mk_report TIMEOUT 120)
  add_executable(stats-tool ${CMAKE_CURRENT_SOURCE_DIR}/stats_tool.c)
  target_link_libraries(stats-tool PRIVATE mk_report mk_core)
  set_target_properties(stats-tool PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME stats_vs_scipy COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/stats_ref.py
           $<TARGET_FILE:stats-tool>)
  set_tests_properties(stats_vs_scipy PROPERTIES TIMEOUT 300)
endif()
