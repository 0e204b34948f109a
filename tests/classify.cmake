# classification metrics (metrics/classify.c): hand-derived cases and seeded random cases against
# the numpy/scipy reference tests/classify_ref.py (mannwhitneyu, rankdata), run by test_classify.
if(TARGET mk_metrics)
  mk_add_test(test_classify SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_classify.c LIBS mk_metrics
              TIMEOUT 120)
endif()
