# Pre-run checks that match the run (issue 16): `run --dry-run` and `validate` make the checks of
# `run`; data errors (missing files, grids, label values) stop a run before its directory exists;
# `--resume` refuses a changed config or manifest unless --force.
add_test(NAME precheck_matches_run COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/precheck_test.sh
         ${CMAKE_BINARY_DIR}/pipeline)
set_tests_properties(precheck_matches_run PROPERTIES TIMEOUT 300)
