# Histology methods (issue 21): the patch classifier and the conditional generator
# (models/mk_classifier.h); `histo_cli` runs examples/histo.toml short: the three methods, the
# classification reports and heat maps, inference on the real IHC slides, bad slides, resume.
if(TARGET mk_models)
  mk_add_test(test_classifier SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_classifier.c
              LIBS mk_models mk_nn TIMEOUT 120)
  target_include_directories(test_classifier PRIVATE ${CMAKE_SOURCE_DIR})
endif()
if(TARGET mk_stages)
  # histo_meta's teacher gradient against a finite difference of its meta objective
  mk_add_test(test_histo_meta SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_histo_meta.c
              LIBS mk_stages mk_models mk_nn TIMEOUT 120)
  target_include_directories(test_histo_meta PRIVATE ${CMAKE_SOURCE_DIR})
endif()
if(TARGET pipeline)
  add_test(NAME histo_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/histo_test.sh
           $<TARGET_FILE:pipeline> ${CMAKE_SOURCE_DIR} ${MK_SHARED_DIR})
  set_tests_properties(histo_cli PROPERTIES TIMEOUT 600 LABELS no-sanitize)
endif()
