# Read by CMake for the C compiler mewe-cc on CMAKE_SYSTEM_NAME WASI (Platform/<system>-<compiler
# name>, found through the toolchain file's CMAKE_MODULE_PATH), after its generic system
# settings have turned shared libraries back on; the toolchain file alone cannot keep them off.
# wasm32-wasi has none: add_library(... SHARED) and BUILD_SHARED_LIBS=ON give static libraries
# (with CMake's warning), as on other static targets.
set_property(GLOBAL PROPERTY TARGET_SUPPORTS_SHARED_LIBS FALSE)
