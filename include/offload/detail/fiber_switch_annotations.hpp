#pragma once

/// @file fiber_switch_annotations.hpp
/// @brief Tells AddressSanitizer and ThreadSanitizer about fiber switches, so that neither
/// reports noise (ASan: the stack bounds and fake stacks of each fiber; TSan: one logical thread
/// per fiber). Compiles to nothing in builds without a sanitizer.
///
/// Protocol, for a switch from fiber A to fiber B:
///   before_switch(A's record, B's record)   on A, right before the jump
///   after_switch(A's record, &from)         on A, first thing once A runs again
/// A fiber that runs for the first time calls after_switch() on entry; a fiber that is being
/// destroyed calls before_dying_switch() before it leaves, and the fiber it returns to then calls
/// release_dead_fake_stack().

#include <cstddef>

#include "offload/config.hpp"
#include "offload/detail/fiber_stack.hpp"

#if OFFLOAD_ASAN
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, std::size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save,
                                     const void** bottom_old,
                                     std::size_t* size_old);
}
#endif
#if OFFLOAD_TSAN
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
}
#endif

namespace offload::detail {

/// What the sanitizers keep per fiber. Empty without sanitizers.
struct fiber_sanitizer_state {
#if OFFLOAD_ASAN
  void* fake_stack = nullptr;  // ASan's fake stack of the fiber while it is switched out
#endif
#if OFFLOAD_TSAN
  void* tsan = nullptr;  // TSan's fiber
#endif
};

/// Creates the sanitizer state of a new fiber (the thread's own, for `is_thread` true).
inline void sanitizer_fiber_created([[maybe_unused]] fiber_sanitizer_state& s,
                                    [[maybe_unused]] bool is_thread) noexcept {
#if OFFLOAD_TSAN
  s.tsan = is_thread ? __tsan_get_current_fiber() : __tsan_create_fiber(0);
#endif
}

/// Destroys what sanitizer_fiber_created() made (nothing for a thread's own context).
inline void sanitizer_fiber_destroyed([[maybe_unused]] fiber_sanitizer_state& s,
                                      [[maybe_unused]] bool is_thread) noexcept {
#if OFFLOAD_TSAN
  if (!is_thread && s.tsan != nullptr)
    __tsan_destroy_fiber(s.tsan);
#endif
}

/// On the fiber that is about to jump to `to` (whose stack is `to_stack`).
inline void before_switch([[maybe_unused]] fiber_sanitizer_state& from,
                          [[maybe_unused]] fiber_sanitizer_state& to,
                          [[maybe_unused]] const stack_bounds& to_stack) noexcept {
#if OFFLOAD_ASAN
  __sanitizer_start_switch_fiber(&from.fake_stack, to_stack.low, to_stack.size);
#endif
#if OFFLOAD_TSAN
  __tsan_switch_to_fiber(to.tsan, 0);
#endif
}

/// On a fiber that is being destroyed (unwinding), about to leave for good. Its fake stack is
/// kept until release_dead_fake_stack(): the rest of its unwinding still reads frames there.
inline void before_dying_switch([[maybe_unused]] fiber_sanitizer_state& dying,
                                [[maybe_unused]] const stack_bounds& to_stack) noexcept {
#if OFFLOAD_ASAN
  __sanitizer_start_switch_fiber(&dying.fake_stack, to_stack.low, to_stack.size);
#endif
}

/// On the fiber that destroyed `dead` (after its after_switch()): frees the dead fiber's fake
/// stack. ASan frees only the fake stack of the fiber that is switching away with no place to
/// save it, so this switches to itself twice: once to make `dead`'s fake stack current and free
/// it, once to get its own back.
inline void release_dead_fake_stack([[maybe_unused]] const stack_bounds& self_stack,
                                    [[maybe_unused]] fiber_sanitizer_state& dead) noexcept {
#if OFFLOAD_ASAN
  if (dead.fake_stack == nullptr)
    return;
  void* mine = nullptr;
  __sanitizer_start_switch_fiber(&mine, self_stack.low, self_stack.size);
  __sanitizer_finish_switch_fiber(dead.fake_stack, nullptr, nullptr);
  __sanitizer_start_switch_fiber(nullptr, self_stack.low, self_stack.size);
  __sanitizer_finish_switch_fiber(mine, nullptr, nullptr);
  dead.fake_stack = nullptr;
#endif
}

/// First thing on a fiber that got control. Stores the bounds of the stack it came from in
/// `*came_from` when that was not known yet (a thread's own stack, learned on its first switch).
inline void after_switch([[maybe_unused]] fiber_sanitizer_state& self,
                         [[maybe_unused]] stack_bounds* came_from) noexcept {
#if OFFLOAD_ASAN
  const void* bottom = nullptr;
  std::size_t size = 0;
  __sanitizer_finish_switch_fiber(self.fake_stack, &bottom, &size);
  if (came_from != nullptr && came_from->low == nullptr) {
    came_from->low = static_cast<char*>(const_cast<void*>(bottom));
    came_from->size = size;
  }
#endif
}

}  // namespace offload::detail
