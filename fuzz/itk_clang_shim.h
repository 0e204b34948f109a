/* Fuzz build only (MK_FUZZ): Debian's ITK 5.2 ships a compiler-detection header generated for
 * gcc alone ("#error Unsupported compiler" under clang). clang implements the same GNU dialect, so
 * for the length of that one header it is described as the gcc ITK was built with; every macro is
 * restored afterwards. Force-included (-include) before itk_bridge.cpp, so the header guard then
 * keeps ITK's own includes of it out. The release and sanitizer builds (gcc) never see this file.
 */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wbuiltin-macro-redefined"
#pragma push_macro("__clang__")
#pragma push_macro("__GNUC__")
#pragma push_macro("__GNUC_MINOR__")
#undef __clang__
#undef __GNUC__
#undef __GNUC_MINOR__
#define __GNUC__ 12
#define __GNUC_MINOR__ 2
#include <itk_compiler_detection.h>
#pragma pop_macro("__GNUC_MINOR__")
#pragma pop_macro("__GNUC__")
#pragma pop_macro("__clang__")
#pragma clang diagnostic pop
