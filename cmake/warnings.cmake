# offload_warnings: the warning set for the project's own tests, benchmarks and examples.
# Linked PRIVATE by those targets only; never put on offload::offload and never installed.
add_library(offload_warnings INTERFACE)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(offload_warnings INTERFACE
    -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
    -Woverloaded-virtual -Wconversion -Wsign-conversion -Wdouble-promotion
    -Wformat=2 -Wimplicit-fallthrough)
  if(OFFLOAD_WARNINGS_AS_ERRORS)
    target_compile_options(offload_warnings INTERFACE -Werror)
  endif()
elseif(MSVC)
  target_compile_options(offload_warnings INTERFACE /W4 /permissive- /Zc:__cplusplus /wd4324)
  if(OFFLOAD_WARNINGS_AS_ERRORS)
    target_compile_options(offload_warnings INTERFACE /WX)
  endif()
endif()
