#pragma once

/// @file config.hpp
/// @brief Build-configuration macros: sanitizer detection and assertions.

#include <cstdio>
#include <cstdlib>

// OFFLOAD_TSAN is 1 when the translation unit is built with ThreadSanitizer.
#if defined(__SANITIZE_THREAD__)
#define OFFLOAD_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define OFFLOAD_TSAN 1
#endif
#endif
#ifndef OFFLOAD_TSAN
#define OFFLOAD_TSAN 0
#endif

// OFFLOAD_ASAN is 1 when the translation unit is built with AddressSanitizer.
#if defined(__SANITIZE_ADDRESS__)
#define OFFLOAD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OFFLOAD_ASAN 1
#endif
#endif
#ifndef OFFLOAD_ASAN
#define OFFLOAD_ASAN 0
#endif

// OFFLOAD_ASSERT checks a precondition in debug builds (or with OFFLOAD_ENABLE_ASSERTS). It is
// never turned into an optimiser assumption.
#if !defined(NDEBUG) || defined(OFFLOAD_ENABLE_ASSERTS)
#define OFFLOAD_ASSERT(cond, msg)                                   \
  do {                                                              \
    if (!(cond)) {                                                  \
      std::fprintf(stderr,                                          \
                   "offload: assertion failed: %s (%s) at %s:%d\n", \
                   msg,                                             \
                   #cond,                                           \
                   __FILE__,                                        \
                   __LINE__);                                       \
      std::abort();                                                 \
    }                                                               \
  } while (0)
#else
#define OFFLOAD_ASSERT(cond, msg) \
  do {                            \
  } while (0)
#endif
