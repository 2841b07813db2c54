# Builds consumer programs against offload the ways a user would, each at -O3 -Wall -Wextra
# -Werror with offload's headers treated as the consumer's own (no system-header suppression):
#   find_package(offload) after `cmake --install`, add_subdirectory(<offload source>), and a plain
#   `c++ -std=c++20 ... $(pkg-config --cflags --libs offload)`; with g++ and clang++; from an
#   install with the default options (hwloc found, membarrier) and one configured with
#   -DOFFLOAD_WITH_HWLOC=OFF -DOFFLOAD_MEMBARRIER=OFF, whose consumers must see those choices.
# Every consumer is README.md's first example plus config_check.cpp and every_option.cpp.
# Nothing is suppressed: a warning from offload's headers fails the build.
# With the client libraries present, tests/install/broker_consumer builds against COMPONENTS broker.
# Invoked by CTest: cmake -DSOURCE_DIR=... -DWORK_DIR=... -DGENERATOR=... -P run_consumers.cmake
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " shown "${ARGN}")
    message(FATAL_ERROR "command failed (${rc}): ${shown}\n${out}\n${err}")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(consumer_dir "${SOURCE_DIR}/tests/install/consumer")

# README.md's first C++ block, the example a new user copies first.
file(READ "${SOURCE_DIR}/README.md" readme)
string(REGEX MATCH "```cpp\n([^`]*)```" block "${readme}")
if(NOT CMAKE_MATCH_1)
  message(FATAL_ERROR "README.md has no ```cpp block to build")
endif()
file(WRITE "${WORK_DIR}/readme_example.cpp" "${CMAKE_MATCH_1}")

find_program(GXX g++ REQUIRED)
find_program(CLANGXX NAMES clang++ clang++-19 clang++-14 REQUIRED)
find_program(PKG_CONFIG pkg-config REQUIRED)

# install(NAME, extra configure args...): installs offload into ${WORK_DIR}/NAME.
function(install_offload name)
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/${name}-build" -G "${GENERATOR}"
      -DOFFLOAD_BUILD_TESTS=OFF -DOFFLOAD_BUILD_EXAMPLES=OFF -DOFFLOAD_BUILD_BENCHMARKS=OFF
      -DOFFLOAD_BUILD_BROKER=OFF -DOFFLOAD_INSTALL=ON "-DCMAKE_INSTALL_PREFIX=${WORK_DIR}/${name}"
      ${ARGN})
  run(${CMAKE_COMMAND} --build "${WORK_DIR}/${name}-build")  # nothing to build when header-only
  run(${CMAKE_COMMAND} --install "${WORK_DIR}/${name}-build")
endfunction()

# cmake_consumer(TAG MODE PREFIX COMPILER HWLOC MEMBARRIER)
function(cmake_consumer tag mode prefix compiler hwloc membarrier)
  set(dir "${WORK_DIR}/${tag}")
  run(${CMAKE_COMMAND} -S "${consumer_dir}" -B "${dir}" -G "${GENERATOR}"
      -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_COMPILER=${compiler}"
      -DCONSUME_MODE=${mode} "-DOFFLOAD_SOURCE_DIR=${SOURCE_DIR}" "-DCMAKE_PREFIX_PATH=${prefix}"
      "-DREADME_EXAMPLE=${WORK_DIR}/readme_example.cpp"
      -DEXPECT_HWLOC=${hwloc} -DEXPECT_MEMBARRIER=${membarrier})
  run(${CMAKE_COMMAND} --build "${dir}")
  run("${dir}/consumer")
endfunction()

# pkgconfig_consumer(TAG PREFIX COMPILER HWLOC MEMBARRIER): one command line, as the README shows.
function(pkgconfig_consumer tag prefix compiler hwloc membarrier)
  set(ENV{PKG_CONFIG_PATH} "${prefix}/share/pkgconfig")
  execute_process(COMMAND ${PKG_CONFIG} --cflags --libs offload
                  RESULT_VARIABLE rc OUTPUT_VARIABLE flags ERROR_VARIABLE err
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config --cflags --libs offload failed (${rc}): ${err}")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  set(exe "${WORK_DIR}/${tag}-consumer")
  run(${compiler} -std=c++20 -O3 -Wall -Wextra -Werror
      -DEXPECT_HWLOC=${hwloc} -DEXPECT_MEMBARRIER=${membarrier}
      "${WORK_DIR}/readme_example.cpp" "${consumer_dir}/config_check.cpp"
      "${consumer_dir}/every_option.cpp" ${flags} -o "${exe}")
  run("${exe}")
endfunction()


install_offload(default)
install_offload(plain -DOFFLOAD_WITH_HWLOC=OFF -DOFFLOAD_MEMBARRIER=OFF)

cmake_consumer(gcc-find-package find_package "${WORK_DIR}/default" ${GXX} 1 1)
cmake_consumer(gcc-add-subdirectory add_subdirectory "" ${GXX} 1 1)
pkgconfig_consumer(gcc-pkg-config "${WORK_DIR}/default" ${GXX} 1 1)
cmake_consumer(clang-find-package find_package "${WORK_DIR}/default" ${CLANGXX} 1 1)
pkgconfig_consumer(clang-pkg-config "${WORK_DIR}/default" ${CLANGXX} 1 1)
cmake_consumer(gcc-find-package-plain find_package "${WORK_DIR}/plain" ${GXX} 0 0)
pkgconfig_consumer(gcc-pkg-config-plain "${WORK_DIR}/plain" ${GXX} 0 0)

# COMPONENTS broker: a user's own Celery task and worker against an install with offload::broker
# (skipped, with a message, where the build machine has no hiredis/librabbitmq).
find_program(PKG_CONFIG_BIN pkg-config)
execute_process(COMMAND ${PKG_CONFIG_BIN} --exists hiredis librabbitmq RESULT_VARIABLE no_broker_deps)
if(no_broker_deps EQUAL 0)
  install_offload(broker -DOFFLOAD_BUILD_BROKER=ON)
  set(dir "${WORK_DIR}/gcc-broker-find-package")
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/install/broker_consumer" -B "${dir}"
      -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_COMPILER=${GXX}"
      "-DCMAKE_PREFIX_PATH=${WORK_DIR}/broker")
  run(${CMAKE_COMMAND} --build "${dir}")
  run("${dir}/broker_consumer")
else()
  message(STATUS "hiredis or librabbitmq missing: the offload::broker consumer is not built")
endif()
