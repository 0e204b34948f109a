# phantoms: generators in memory (fast, also under sanitizers) and `pipeline synth` end to end.
if(TARGET mk_phantoms)
  # The pipeline executable needs mk_phantoms for the synth verb (pipeline/CMakeLists.txt lists
  # the module libraries it links; until mk_phantoms is in that list, link it from here).
  if(TARGET pipeline)
    target_link_libraries(pipeline PRIVATE mk_phantoms)
  endif()
  mk_add_test(test_phantoms SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_phantoms.c
              LIBS mk_phantoms mk_io TIMEOUT 120)
  get_target_property(_mk_ph_defs mk_phantoms COMPILE_DEFINITIONS)
  target_compile_definitions(test_phantoms PRIVATE ${_mk_ph_defs})
endif()
