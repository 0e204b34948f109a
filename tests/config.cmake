mk_add_test(test_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_config.c LIBS mk_pipeline mk_config)
# CLI behaviour of the pipeline binary (exit codes, messages, nothing written on bad configs).
add_test(NAME cli_pipeline COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_test.sh
         ${CMAKE_BINARY_DIR}/pipeline ${CMAKE_SOURCE_DIR})
# docs/config.md is generated from the schema and must stay in step with it.
add_test(NAME docs_config_up_to_date COMMAND bash -c
         "$<TARGET_FILE:pipeline> validate --explain --markdown | diff -u ${CMAKE_SOURCE_DIR}/docs/config.md -")
# SIGKILL mid-training, then `pipeline run --resume`: same weights and metrics as an uninterrupted run.
add_test(NAME resume_after_sigkill COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/resume_test.sh
         ${CMAKE_BINARY_DIR}/pipeline)
set_tests_properties(resume_after_sigkill PROPERTIES LABELS no-sanitize TIMEOUT 600)
add_test(NAME sigterm_inside_iteration COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/sigterm_test.sh
         ${CMAKE_BINARY_DIR}/pipeline)
# timing is relative to the iteration measured in the same run; not under the sanitizers
set_tests_properties(sigterm_inside_iteration PROPERTIES LABELS no-sanitize TIMEOUT 300)
