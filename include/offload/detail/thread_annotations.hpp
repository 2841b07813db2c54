#pragma once

/// @file thread_annotations.hpp
/// @brief Mutex-guarded state that the compiler checks: clang's thread-safety analysis
/// (-Wthread-safety) through an annotated mutex and scoped lock; the annotations vanish
/// elsewhere. `./scripts/test` compiles the headers with clang and -Wthread-safety -Werror.

#include <mutex>

#if defined(__clang__)
#define OFFLOAD_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define OFFLOAD_THREAD_ANNOTATION(x)
#endif

/// The member is read and written only with `m` held.
#define OFFLOAD_GUARDED_BY(m) OFFLOAD_THREAD_ANNOTATION(guarded_by(m))
/// The function is called with these mutexes held.
#define OFFLOAD_REQUIRES(...) OFFLOAD_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
/// The function must not be called with these mutexes held (it takes them).
#define OFFLOAD_EXCLUDES(...) OFFLOAD_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define OFFLOAD_ACQUIRE(...) OFFLOAD_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define OFFLOAD_RELEASE(...) OFFLOAD_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define OFFLOAD_RETURN_CAPABILITY(m) OFFLOAD_THREAD_ANNOTATION(lock_returned(m))
/// The function is not analysed (say why where it is used).
#define OFFLOAD_NO_THREAD_SAFETY_ANALYSIS OFFLOAD_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace offload::detail {

/// std::mutex, as a capability the analysis knows.
class OFFLOAD_THREAD_ANNOTATION(capability("mutex")) annotated_mutex {
 public:
  void lock() OFFLOAD_ACQUIRE() { m_mutex.lock(); }
  void unlock() OFFLOAD_RELEASE() { m_mutex.unlock(); }
  bool try_lock() OFFLOAD_THREAD_ANNOTATION(try_acquire_capability(true)) {
    return m_mutex.try_lock();
  }

 private:
  std::mutex m_mutex;
};

/// std::lock_guard over an annotated_mutex.
class OFFLOAD_THREAD_ANNOTATION(scoped_lockable) scoped_lock {
 public:
  explicit scoped_lock(annotated_mutex& m) OFFLOAD_ACQUIRE(m) : m_mutex(m) { m_mutex.lock(); }
  ~scoped_lock() OFFLOAD_RELEASE() { m_mutex.unlock(); }
  scoped_lock(const scoped_lock&) = delete;
  scoped_lock& operator=(const scoped_lock&) = delete;

 private:
  annotated_mutex& m_mutex;
};

}  // namespace offload::detail
