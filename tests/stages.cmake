# stages: data loader, translator, hint names, tiny CMEDL / baseline runs, resume after SIGKILL.
if(TARGET mk_stages AND TARGET mk_phantoms)
  mk_add_test(test_stages SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_stages.c
              LIBS mk_stages mk_phantoms mk_models mk_nn mk_io TIMEOUT 300)
  target_include_directories(test_stages PRIVATE ${CMAKE_SOURCE_DIR})
endif()
if(TARGET mk_stages AND TARGET mk_phantoms)
  # the contract of every registered method (a new method is tested by being registered)
  mk_add_test(test_methods SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_methods.c
              LIBS mk_stages mk_phantoms mk_models mk_nn mk_io TIMEOUT 300)
  target_include_directories(test_methods PRIVATE ${CMAKE_SOURCE_DIR})
endif()
if(TARGET pipeline)
  add_test(NAME cardiac_example COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cardiac_example.sh
           $<TARGET_FILE:pipeline> ${CMAKE_SOURCE_DIR})
  set_tests_properties(cardiac_example PROPERTIES TIMEOUT 600 LABELS no-sanitize)
endif()
if(TARGET mk_stages AND TARGET mk_phantoms)
  # real-world geometry: reorientation, resampling, sampler, hold-out, dataset folders
  mk_add_test(test_data_geometry SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_data_geometry.c
              LIBS mk_stages mk_phantoms mk_models mk_nn mk_io TIMEOUT 300)
  target_include_directories(test_data_geometry PRIVATE ${CMAKE_SOURCE_DIR})
endif()
if(TARGET pipeline)
  # examples/real-ct.toml: the planned config on the real cranium CT, trained and evaluated
  add_test(NAME real_ct_example COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/real_ct_example.sh
           $<TARGET_FILE:pipeline> ${CMAKE_SOURCE_DIR} ${MK_SHARED_DIR})
  set_tests_properties(real_ct_example PROPERTIES TIMEOUT 900 LABELS no-sanitize)
endif()
if(TARGET mk_stages)
  # inference: the self-describing model file, window placement, mirroring, exact grids
  mk_add_test(test_infer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_infer.c
              LIBS mk_stages mk_models mk_nn mk_io TIMEOUT 300)
  target_include_directories(test_infer PRIVATE ${CMAKE_SOURCE_DIR})
endif()
