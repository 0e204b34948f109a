# ACT-Net + CTKD (stages/method_coteach*.c): paths off = the tiny baseline bit for bit, the
# co-teacher's EMA rule, the temperature (fixed, CTKD global and instance-wise, the curriculum,
# resume), bad configs; `coteach_cli` runs examples/coteach.toml's pre-run checks and a short run.
if(TARGET mk_stages AND TARGET mk_phantoms)
  mk_add_test(test_coteach SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_coteach.c
              LIBS mk_stages mk_phantoms mk_models mk_nn mk_io mk_report TIMEOUT 300)
  target_include_directories(test_coteach PRIVATE ${CMAKE_SOURCE_DIR})
endif()
if(TARGET pipeline)
  add_test(NAME coteach_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/coteach_test.sh
           $<TARGET_FILE:pipeline> ${CMAKE_SOURCE_DIR})
  set_tests_properties(coteach_cli PROPERTIES TIMEOUT 600 LABELS no-sanitize)
endif()
