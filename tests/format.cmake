# clang-format is checked: every C/C++ source of the tree (git ls-files) is formatted as
# .clang-format says (`make format` rewrites them).
find_program(MK_CLANG_FORMAT clang-format)
if(MK_CLANG_FORMAT)
  add_test(NAME clang_format_clean COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/format_check.sh
           ${MK_CLANG_FORMAT} ${CMAKE_SOURCE_DIR})
else()
  add_test(NAME clang_format_clean COMMAND sh -c
           "echo 'FAIL: clang-format is missing (Debian package clang-format, in scripts/deps.list: make deps)'; exit 1")
endif()
