# LE-UDA (stages/method_leuda*.c): the affine augmentation, aligned batches, the translations,
# leuda = leuda_source during the warm-up, the teachers' EMA rule, the switches, bad configs;
# `leuda_cli` runs examples/leuda.toml's pre-run checks and a short run.
if(TARGET mk_stages AND TARGET mk_phantoms)
  mk_add_test(test_leuda SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_leuda.c
              LIBS mk_stages mk_phantoms mk_models mk_nn mk_io mk_report TIMEOUT 300)
  target_include_directories(test_leuda PRIVATE ${CMAKE_SOURCE_DIR})
endif()
if(TARGET pipeline)
  add_test(NAME leuda_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/leuda_test.sh
           $<TARGET_FILE:pipeline> ${CMAKE_SOURCE_DIR})
  set_tests_properties(leuda_cli PROPERTIES TIMEOUT 600 LABELS no-sanitize)
endif()
