# The one dependency list (scripts/deps.list): every Python module a test imports and every program
# it runs is declared there, every declared package is installed, README's paragraph is generated
# from it. deps_check_can_fail shows the check failing: the list without python3-pil, and a test
# source that imports a module no line declares.
add_test(NAME deps_declared COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/deps_check.py
         ${CMAKE_SOURCE_DIR})
set_tests_properties(deps_declared PROPERTIES TIMEOUT 120 ENVIRONMENT "MK_SHARED_DIR=${MK_SHARED_DIR}")
add_test(NAME deps_check_can_fail COMMAND bash ${CMAKE_SOURCE_DIR}/tests/deps_can_fail.sh
         ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/tests/deps_can_fail)
set_tests_properties(deps_check_can_fail PROPERTIES TIMEOUT 120)
