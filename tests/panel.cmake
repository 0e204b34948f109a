# report panels: mk_panel_render on synthetic cases, its PNG decoded back with cairo (test_panel);
# orientation against nibabel-written volumes in several storage orders (panel_ref.py running
# panel-tool, which reads them with the project's reader). Both release cairo's and fontconfig's
# process-wide caches at exit (fontconfig comes with libcairo2-dev) so sanitizer builds report
# only leaks of medkd.
if(TARGET mk_report)
  mk_add_test(test_panel SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_panel.c
              LIBS mk_report mk_io mk::cairo TIMEOUT 300)
  target_include_directories(test_panel PRIVATE ${CMAKE_SOURCE_DIR})
  add_executable(panel-tool ${CMAKE_CURRENT_SOURCE_DIR}/panel_tool.c)
  target_link_libraries(panel-tool PRIVATE mk_report mk_io mk_core mk::cairo)
  target_include_directories(panel-tool PRIVATE ${CMAKE_SOURCE_DIR})
  set_target_properties(panel-tool PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(MK_PANEL_FONTCONFIG QUIET IMPORTED_TARGET fontconfig)
  endif()
  if(MK_PANEL_FONTCONFIG_FOUND)
    foreach(t test_panel panel-tool)
      target_link_libraries(${t} PRIVATE PkgConfig::MK_PANEL_FONTCONFIG)
      target_compile_definitions(${t} PRIVATE MK_TEST_HAVE_FONTCONFIG=1)
    endforeach()
  endif()
  add_test(NAME panel_orientation COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/panel_ref.py
           $<TARGET_FILE:panel-tool>)
  set_tests_properties(panel_orientation PROPERTIES TIMEOUT 120)
endif()
