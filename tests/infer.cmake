# `pipeline infer` (issue 17): geometry against nibabel on the real volumes and reoriented copies,
# SIGKILL + --continue, failures that do not stop the batch, shards, the infer-then-eval loop.
# It trains a small model first (about 15 s), hence no-sanitize.
if(TARGET pipeline)
  add_test(NAME infer_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/infer_test.sh
           $<TARGET_FILE:pipeline> ${CMAKE_SOURCE_DIR} ${MK_SHARED_DIR})
  set_tests_properties(infer_cli PROPERTIES TIMEOUT 600 LABELS no-sanitize)
endif()
