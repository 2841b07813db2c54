# Builds two consumer projects against offload with -Werror:
#   1. find_package(offload CONFIG REQUIRED) after `cmake --install` into a temporary prefix;
#   2. add_subdirectory(<offload source>).
# Invoked by CTest: cmake -DSOURCE_DIR=... -DWORK_DIR=... -DGENERATOR=... -P run_consumers.cmake
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/offload" -G "${GENERATOR}"
    -DOFFLOAD_BUILD_TESTS=OFF -DOFFLOAD_BUILD_EXAMPLES=OFF -DOFFLOAD_BUILD_BENCHMARKS=OFF
    -DOFFLOAD_INSTALL=ON -DCMAKE_INSTALL_PREFIX=${prefix})
run(${CMAKE_COMMAND} --install "${WORK_DIR}/offload")

foreach(mode find_package add_subdirectory)
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/install/consumer" -B "${WORK_DIR}/${mode}"
      -G "${GENERATOR}" -DCONSUME_MODE=${mode} -DOFFLOAD_SOURCE_DIR=${SOURCE_DIR}
      -DCMAKE_PREFIX_PATH=${prefix})
  run(${CMAKE_COMMAND} --build "${WORK_DIR}/${mode}")
  run("${WORK_DIR}/${mode}/consumer")
endforeach()
