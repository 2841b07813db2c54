# Finds moodycamel ConcurrentQueue, the one third-party header offload includes, and defines the
# imported target offload::concurrentqueue. Shared by the build tree and the installed package.
#
# Debian's libconcurrentqueue-dev installs headers under <prefix>/include/concurrentqueue/ without a
# CMake package; some platforms (vcpkg, conan) ship a `concurrentqueue` package instead.
if(NOT TARGET offload::concurrentqueue)
  find_package(concurrentqueue CONFIG QUIET)
  if(TARGET concurrentqueue::concurrentqueue)
    add_library(offload::concurrentqueue INTERFACE IMPORTED)
    target_link_libraries(offload::concurrentqueue INTERFACE concurrentqueue::concurrentqueue)
  else()
    find_path(OFFLOAD_CONCURRENTQUEUE_INCLUDE_DIR concurrentqueue/concurrentqueue.h
              PATH_SUFFIXES include)
    if(NOT OFFLOAD_CONCURRENTQUEUE_INCLUDE_DIR)
      message(FATAL_ERROR
        "offload: moodycamel ConcurrentQueue not found (looked for concurrentqueue/concurrentqueue.h). "
        "On Debian/Ubuntu: apt-get install libconcurrentqueue-dev")
    endif()
    add_library(offload::concurrentqueue INTERFACE IMPORTED)
    target_include_directories(offload::concurrentqueue INTERFACE "${OFFLOAD_CONCURRENTQUEUE_INCLUDE_DIR}")
  endif()
endif()

# Boost.Context (Debian: libboost-context-dev): the stacks and context switches of fibers, which
# let a task that waits inside a worker suspend instead of blocking the thread.
if(NOT TARGET offload::boost_context)
  find_package(Boost 1.66 QUIET COMPONENTS context)
  if(NOT TARGET Boost::context)
    message(FATAL_ERROR
      "offload: Boost.Context not found (find_package(Boost COMPONENTS context)). "
      "On Debian/Ubuntu: apt-get install libboost-context-dev")
  endif()
  add_library(offload::boost_context INTERFACE IMPORTED)
  target_link_libraries(offload::boost_context INTERFACE Boost::context)
endif()

# hwloc (Debian: libhwloc-dev): topology-aware placement of workers. Optional: without it,
# executor_options.placement falls back to plain CPU affinity and says so. The installed package
# sets OFFLOAD_WITH_HWLOC to what its build used (offloadConfig.cmake), so that consumers get the
# configuration that was installed; OFFLOAD_HWLOC_USED says what was found.
if(NOT DEFINED OFFLOAD_WITH_HWLOC)
  set(OFFLOAD_WITH_HWLOC AUTO)
endif()
if(NOT TARGET offload::hwloc)
  set(OFFLOAD_HWLOC_USED OFF)
  add_library(offload::hwloc INTERFACE IMPORTED)
  if(OFFLOAD_WITH_HWLOC)
    find_package(PkgConfig QUIET)
    if(PkgConfig_FOUND)
      pkg_check_modules(OFFLOAD_HWLOC QUIET IMPORTED_TARGET hwloc)
    endif()
    if(OFFLOAD_HWLOC_FOUND)
      target_link_libraries(offload::hwloc INTERFACE PkgConfig::OFFLOAD_HWLOC)
      target_compile_definitions(offload::hwloc INTERFACE OFFLOAD_HAS_HWLOC=1)
      set(OFFLOAD_HWLOC_USED ON)
    elseif(NOT OFFLOAD_WITH_HWLOC STREQUAL "AUTO")
      message(FATAL_ERROR
        "offload: OFFLOAD_WITH_HWLOC=${OFFLOAD_WITH_HWLOC} but hwloc was not found (pkg-config "
        "hwloc). On Debian/Ubuntu: apt-get install libhwloc-dev, or configure with "
        "-DOFFLOAD_WITH_HWLOC=OFF")
    else()
      message(STATUS "offload: hwloc not found: placement falls back to plain CPU affinity")
    endif()
  endif()
endif()
