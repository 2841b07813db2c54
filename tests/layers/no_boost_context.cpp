// The headers a task's code uses to wait (futures, this_task, coroutines, when_all, task_mutex,
// manual_reset_event) reach their executor through detail::scheduler only, and wake fibers
// through detail/fiber_wake.hpp: they must not compile Boost.Context, which only the pool needs.
#include <offload/future.hpp>
#include <offload/manual_reset_event.hpp>
#include <offload/task.hpp>
#include <offload/task_mutex.hpp>
#include <offload/this_task.hpp>
#include <offload/when_all.hpp>

#if defined(BOOST_CONTEXT_DETAIL_CONFIG_H) || defined(BOOST_CONTEXT_FIBER_H)
#error "a header a task waits with includes Boost.Context (see detail/fiber_wake.hpp)"
#endif
