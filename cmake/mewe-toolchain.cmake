# CMake toolchain file for multivariant wasm32-wasi builds with mewe-cc:
#   cmake -S . -B build -DCMAKE_TOOLCHAIN_FILE=/path/to/mewe/cmake/mewe-toolchain.cmake
#   cmake --build build && ctest --test-dir build
# Executables are WASI modules (NAME.wasm); ctest runs them under `mewe run`, which preopens
# the test's working directory. mewe settings pass through CMAKE_C_FLAGS (-mewe-variants=8 ...)
# or MEWE_* environment variables. The tools are looked up on PATH, in an active virtualenv,
# and in this checkout's .venv; -DMEWE_BIN_DIR=... points elsewhere.
set(CMAKE_SYSTEM_NAME WASI)
set(CMAKE_SYSTEM_PROCESSOR wasm32)
list(APPEND CMAKE_MODULE_PATH "${CMAKE_CURRENT_LIST_DIR}")  # Platform/WASI-mewe-cc.cmake: no shared libraries

list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES MEWE_BIN_DIR)  # try_compile re-reads this file
set(_mewe_hints "${MEWE_BIN_DIR}" "$ENV{VIRTUAL_ENV}/bin" "${CMAKE_CURRENT_LIST_DIR}/../.venv/bin")
find_program(MEWE_CC_PROGRAM mewe-cc HINTS ${_mewe_hints} REQUIRED)
find_program(MEWE_AR_PROGRAM mewe-ar HINTS ${_mewe_hints} REQUIRED)
find_program(MEWE_RANLIB_PROGRAM mewe-ranlib HINTS ${_mewe_hints} REQUIRED)
find_program(MEWE_PROGRAM mewe HINTS ${_mewe_hints} REQUIRED)

set(CMAKE_C_COMPILER "${MEWE_CC_PROGRAM}")
set(CMAKE_AR "${MEWE_AR_PROGRAM}" CACHE FILEPATH "mewe-ar")
set(CMAKE_RANLIB "${MEWE_RANLIB_PROGRAM}" CACHE FILEPATH "mewe-ranlib")
set(CMAKE_EXECUTABLE_SUFFIX_C ".wasm")  # the per-language form: platform files reset the plain one
set(CMAKE_CROSSCOMPILING_EMULATOR "${MEWE_PROGRAM};run;--dir=.")

# Headers and libraries come from wasi-libc (inside the toolchain), never from the host.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
