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
