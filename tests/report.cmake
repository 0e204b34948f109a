# report: `pipeline report` end to end with no training run (cardiac phantoms, two models from
# `pipeline eval --json`): comparisons against scipy, empty-mask cases, bad input, and the page in
# headless Chromium (tests/report_browser.py); the report library's own unit tests.
if(TARGET pipeline)
  add_test(NAME report_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/report_test.sh
           $<TARGET_FILE:pipeline> ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR})
  set_tests_properties(report_cli PROPERTIES TIMEOUT 300)
endif()
if(TARGET mk_report)
  mk_add_test(test_report SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_report.c
              LIBS mk_report mk_metrics mk_io TIMEOUT 120)
  target_include_directories(test_report PRIVATE ${CMAKE_SOURCE_DIR})
endif()
