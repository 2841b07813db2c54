#pragma once

/// @file task.hpp
/// @brief offload::task<T>: a C++20 coroutine that runs on an executor like any task.
///
/// A coroutine returning offload::task<T> is lazy: it starts when awaited, or when submitted
/// (ex.submit(fn) / ex.post(fn) with `fn` returning a task<T> give an offload::future<T>, with
/// lanes, retries, deadlines, keys and cancellation as for any task: a retry calls `fn` again).
/// Inside one, `co_await` takes an offload::future<U>, another task<U>, `ex.schedule(lane)` and
/// `offload::sleep_for(d)`. After a suspension the coroutine continues on the executor it was
/// running on, as a task in the same lane, with the same this_task context (attempt,
/// stop_requested); if it was not running on a worker, it continues on the thread that
/// completed what it awaited.

#include <chrono>
#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include "offload/clock.hpp"
#include "offload/detail/saturating_time.hpp"
#include "offload/detail/scheduler.hpp"
#include "offload/detail/shared_state.hpp"
#include "offload/detail/sleep_wake.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/future.hpp"
#include "offload/manual_reset_event.hpp"
#include "offload/this_task.hpp"

namespace offload {

template <class T = void>
class task;

namespace detail {

struct task_promise_base;

/// Where a suspended coroutine continues: on the scheduler of the worker that suspended it, as a
/// task in the coroutine's lane and with its this_task context; inline (with that context) when
/// it was not on a worker.
struct resume_point {
  scheduler* sched = nullptr;
  offload::lane lane = offload::lane::normal;
  task_context context{};

  /// Captured when coroutine `h` suspends: the scheduler from the calling thread, the lane and
  /// the context from the coroutine (a task<T>) itself, which carries them from its start, so a
  /// coroutine resumed inline on some other task's thread never picks up that task's context.
  template <class P>
  static resume_point of(std::coroutine_handle<P> h) noexcept {
    resume_point p;
    p.sched = tl_current_scheduler;
    if constexpr (std::is_base_of_v<task_promise_base, P>) {
      p.lane = h.promise().lane;
      p.context = h.promise().context;
    } else {
      p.lane = p.sched != nullptr ? p.sched->running_lane() : offload::lane::normal;
      p.context = tl_task_context;
    }
    return p;
  }

  /// Continues `h` (any thread). Never fails: if the executor refuses the resumption (it
  /// stopped) or memory runs out, `h` continues inline, on the calling thread.
  void resume(std::coroutine_handle<> h) const noexcept {
    struct resumption {
      std::coroutine_handle<> h;
      task_context context;
      void operator()() const noexcept {
        task_context_scope scope(context);
        h.resume();  // a task<T> coroutine keeps its exceptions: resume() does not throw
      }
      void discard(discard_reason) const noexcept { (*this)(); }
    };
    if (sched == nullptr) {
      resumption{h, context}();
      return;
    }
    task_node* node = nullptr;
    try {
      node = make_task(resumption{h, context});
    } catch (...) {
      resumption{h, context}();
      return;
    }
    node->lane = lane;
    try {
      sched->schedule_in_lane(node);
    } catch (...) {
      discard_task(node, discard_reason::rejected);  // resumes it inline
    }
  }
};

/// The state of a task<T> coroutine common to every T.
struct task_promise_base {
  std::coroutine_handle<> continuation;  // the coroutine awaiting this one, if any
  manual_reset_event* done = nullptr;    // set when a submitted (root) coroutine ends
  std::exception_ptr error;
  task_context context{};  // this_task context of the task that started the root coroutine
  offload::lane lane = offload::lane::normal;  // the lane its resumptions run in

  std::suspend_always initial_suspend() noexcept { return {}; }

  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      task_promise_base& p = h.promise();
      if (p.continuation)
        return p.continuation;  // symmetric transfer back to the awaiting coroutine
      if (manual_reset_event* d = p.done)
        d->set();  // the last access to the frame: the waiter may destroy it at once
      return std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class T>
struct task_promise : task_promise_base {
  std::optional<T> value;
  task<T> get_return_object() noexcept;
  template <class U = T>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
  T take() {
    if (error)
      std::rethrow_exception(error);
    return std::move(*value);
  }
};

template <>
struct task_promise<void> : task_promise_base {
  task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() {
    if (error)
      std::rethrow_exception(error);
  }
};

template <class R>
struct is_task : std::false_type {};
template <class T>
struct is_task<task<T>> : std::true_type {};

/// R, or T for R = task<T>: what a submitted callable's future holds.
template <class R>
struct unwrap_task {
  using type = R;
};
template <class T>
struct unwrap_task<task<T>> {
  using type = T;
};

}  // namespace detail

/// A lazily started coroutine producing a T. Move-only; destroying a task that has not run
/// destroys the coroutine without running it. Await it once (`co_await std::move(t)` or
/// `co_await make_task()`), submit the function that makes it, or run it with sync_wait().
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using handle = std::coroutine_handle<promise_type>;

  task(task&& o) noexcept : m_handle(std::exchange(o.m_handle, {})) {}
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      if (m_handle)
        m_handle.destroy();
      m_handle = std::exchange(o.m_handle, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() {
    if (m_handle)
      m_handle.destroy();
  }

  /// Runs the coroutine inline (symmetric transfer) and continues the awaiting one with its
  /// result, or rethrows its exception there.
  auto operator co_await() && noexcept { return awaiter{m_handle}; }

  /// Runs the coroutine to its end and returns its result (or rethrows its exception). On a
  /// worker the waiting task's fiber is suspended; elsewhere the thread blocks. Consumes it.
  T run() && {
    if (!m_handle)
      throw std::logic_error("offload::task: run() on a task that was moved from");
    manual_reset_event done;
    promise_type& p = m_handle.promise();
    p.done = &done;
    p.context = detail::tl_task_context;
    if (detail::scheduler* s = detail::tl_current_scheduler)
      p.lane = s->running_lane();
    m_handle.resume();  // until its first suspension, or to its end
    done.wait();
    handle h = std::exchange(m_handle, {});
    struct destroy_after {
      handle h;
      ~destroy_after() { h.destroy(); }
    } guard{h};
    return h.promise().take();
  }

 private:
  struct awaiter {
    handle h;
    bool await_ready() const noexcept { return !h; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> awaiting) noexcept {
      h.promise().continuation = awaiting;
      if constexpr (std::is_base_of_v<detail::task_promise_base, P>) {
        h.promise().context = awaiting.promise().context;  // the child runs as its parent
        h.promise().lane = awaiting.promise().lane;
      }
      return h;
    }
    T await_resume() {
      if (!h)
        throw std::logic_error("offload::task: awaited a task that was moved from");
      return h.promise().take();
    }
  };

  friend promise_type;
  explicit task(handle h) noexcept : m_handle(h) {}
  handle m_handle;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}

/// Awaits a future: continues at resume_point::of(h) once it is ready.
template <class T>
struct future_awaiter {
  future<T> f;

  bool await_ready() const { return f.is_ready(); }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    struct on_ready final : continuation {
      resume_point where;
      std::coroutine_handle<> h;
      on_ready(resume_point w, std::coroutine_handle<> c) noexcept : where(w), h(c) {}
      void fire() noexcept override { where.resume(h); }
      bool runs_user_code() const noexcept override {
        return where.sched == nullptr;  // else the resumption is queued on the executor
      }
    };
    future_access::state(f)->attach(new on_ready(resume_point::of(h), h));
  }
  T await_resume() { return f.get(); }
};

/// Awaitable of offload::sleep_for(): on a worker, a timer entry resumes the coroutine when
/// due, or at once when the task it belongs to is cancelled.
struct sleep_awaiter {
  clock::duration duration;

  bool await_ready() const {
    if (duration <= clock::duration::zero())
      return true;
    if (tl_current_scheduler == nullptr) {  // not on a worker: the thread sleeps
      std::this_thread::sleep_for(duration);
      return true;
    }
    return tl_task_context.stop_requested();
  }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) const {
    const resume_point where = resume_point::of(h);
    const clock::duration d = duration;  // *this may be gone as soon as `h` can resume
    auto wake = std::make_shared<sleep_wake>([where, h] {
      where.resume(h);
    });
    wake->arm(*where.sched, d, where.context.state);
  }
  void await_resume() const noexcept {}
};

}  // namespace detail

/// `co_await f` / `co_await std::move(f)` in a task<T> coroutine: continues once f is ready,
/// with its value (or its exception). Consumes the future.
template <class T>
detail::future_awaiter<T> operator co_await(future<T>&& f) {
  return detail::future_awaiter<T>{std::move(f)};
}
template <class T>
detail::future_awaiter<T> operator co_await(future<T>& f) {
  return detail::future_awaiter<T>{std::move(f)};
}

/// `co_await offload::sleep_for(d)` in a task<T> coroutine: continues after at least `d` (on the
/// executor's timer and clock; the worker runs other work meanwhile), or earlier once the task
/// is cancelled. Not on a worker, the thread sleeps. Durations beyond the clock's range wait
/// until then (they saturate; they do not wrap).
template <class Rep, class Period>
detail::sleep_awaiter sleep_for(std::chrono::duration<Rep, Period> d) noexcept {
  return detail::sleep_awaiter{detail::saturating_cast<clock::duration>(d)};
}

/// Runs a task<T> on the calling thread (blocking it, or suspending the calling task's fiber on
/// a worker) and returns its result.
template <class T>
T sync_wait(task<T> t) {
  return std::move(t).run();
}

}  // namespace offload
