# stages: data loader, translator, hint names, tiny CMEDL / baseline runs, resume after SIGKILL.
if(TARGET mk_stages AND TARGET mk_phantoms)
  mk_add_test(test_stages SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_stages.c
              LIBS mk_stages mk_phantoms mk_models mk_nn mk_io TIMEOUT 300)
  target_include_directories(test_stages PRIVATE ${CMAKE_SOURCE_DIR})
endif()
