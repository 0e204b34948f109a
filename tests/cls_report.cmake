# classification reports (report/cls_report.c): mk_cls_report_write's JSON read back with cJSON
# against mk_cls_metrics_compute per scope, its HDF5 read with h5py and the heat map PNG read with
# PIL (tests/cls_report_check.py), bad input and unwritable outputs. Releases cairo's and
# fontconfig's process-wide caches at exit, as test_panel does.
if(TARGET mk_report)
  mk_add_test(test_cls_report SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cls_report.c
              LIBS mk_report mk_metrics mk::cjson mk::cairo TIMEOUT 120)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(MK_CLS_FONTCONFIG QUIET IMPORTED_TARGET fontconfig)
  endif()
  if(MK_CLS_FONTCONFIG_FOUND)
    target_link_libraries(test_cls_report PRIVATE PkgConfig::MK_CLS_FONTCONFIG)
    target_compile_definitions(test_cls_report PRIVATE MK_TEST_HAVE_FONTCONFIG=1)
  endif()
endif()
