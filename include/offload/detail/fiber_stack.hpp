#pragma once

/// @file fiber_stack.hpp
/// @brief guarded_stack: a fiber stack with a guard page below it, every mapping and protection
/// call checked, so that a stack is either guarded or not made at all.

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>

#include <boost/context/stack_context.hpp>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace offload::detail {

/// The lowest usable address and the usable size of a stack (the guard page excluded).
struct stack_bounds {
  char* low = nullptr;  // null: unknown
  std::size_t size = 0;

  /// Bytes left below the caller, if it runs on this stack; SIZE_MAX when unknown.
  [[gnu::noinline]] std::size_t room() const noexcept {
    // The frame address, not a local's: AddressSanitizer may move locals to a fake stack.
    const char* here = static_cast<const char*>(__builtin_frame_address(0));
    if (low == nullptr || here < low || here >= low + size)
      return SIZE_MAX;
    return static_cast<std::size_t>(here - low);
  }

  /// Bytes to leave free before running another task nested on this stack: a quarter of it,
  /// at least 16 KiB and at most 256 KiB.
  std::size_t reserve() const noexcept {
    return std::clamp<std::size_t>(size / 4, std::size_t{16} << 10, std::size_t{256} << 10);
  }
};

/// The calling thread's own stack, from the C library (unknown where it cannot tell).
inline stack_bounds current_thread_stack() noexcept {
  stack_bounds b;
#if defined(__linux__) && defined(__GLIBC__)
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* addr = nullptr;
    std::size_t size = 0;
    if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
      b.low = static_cast<char*>(addr);
      b.size = size;
    }
    pthread_attr_destroy(&attr);
  }
#endif
  return b;
}

/// A Boost.Context stack allocator: mmap()s `size` usable bytes plus one guard page below them
/// and makes the guard inaccessible, so that an overflow is a SIGSEGV, never a silent write into
/// other memory. Unlike boost::context::protected_fixedsize_stack, which only asserts that
/// mprotect() succeeded, every call is checked: when the guard cannot be set (for example past
/// vm.max_map_count, where splitting the mapping fails), the mapping is undone and allocate()
/// throws std::system_error, so no stack ever runs unguarded. Records the bounds in `*bounds`.
class guarded_stack {
 public:
  guarded_stack(std::size_t size, stack_bounds* bounds) noexcept : m_size(size), m_bounds(bounds) {}

  boost::context::stack_context allocate() {
#if defined(__unix__) || defined(__APPLE__)
    const std::size_t page = page_size();
    const std::size_t usable = (m_size + page - 1) / page * page;
    const std::size_t total = usable + page;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
#if defined(MAP_STACK)
    flags |= MAP_STACK;
#endif
    void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (base == MAP_FAILED)
      fail("mmap() of " + std::to_string(total) + " bytes");
    if (::mprotect(base, page, PROT_NONE) != 0) {
      const int err = errno;
      ::munmap(base, total);
      errno = err;
      fail("mprotect() of its guard page");
    }
    boost::context::stack_context s;
    s.size = total;
    s.sp = static_cast<char*>(base) + total;  // stacks grow down from the top
    if (m_bounds != nullptr)
      *m_bounds = stack_bounds{static_cast<char*>(base) + page, usable};
    return s;
#else
    static_assert(sizeof(void*) == 0, "offload fibers need mmap() and mprotect()");
#endif
  }

  void deallocate(boost::context::stack_context& s) noexcept {
#if defined(__unix__) || defined(__APPLE__)
    ::munmap(static_cast<char*>(s.sp) - s.size, s.size);
#endif
  }

  static std::size_t page_size() noexcept {
    static const std::size_t page = [] {
      const long p = ::sysconf(_SC_PAGESIZE);
      return p > 0 ? static_cast<std::size_t>(p) : std::size_t{4096};
    }();
    return page;
  }

 private:
  [[noreturn]] static void fail(const std::string& what) {
    const int err = errno;
    throw std::system_error(err,
                            std::generic_category(),
                            "offload: cannot make a guarded fiber stack: " + what + " failed");
  }

  std::size_t m_size;
  stack_bounds* m_bounds;
};

}  // namespace offload::detail
