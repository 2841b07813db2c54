#pragma once

/// @file hooks.hpp
/// @brief hook_dispatcher: calls the task event hooks and on_task_error; failure_sink: where the
/// pool reports a failed task's dead letter.

#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "offload/dead_letter.hpp"
#include "offload/detail/shared_text.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/executor_options.hpp"
#include "offload/lane.hpp"
#include "offload/task_events.hpp"

namespace offload::detail {

/// Receives the dead letter of a task that failed for good (the failure path only).
class failure_sink {
 public:
  virtual void add_dead_letter(dead_letter d) noexcept = 0;

 protected:
  ~failure_sink() = default;
};

/// Owns the hooks; set at construction, read by any thread, never written after. A hook that
/// throws is ignored: the task's accounting completes regardless.
class hook_dispatcher {
 public:
  hook_dispatcher(task_hooks hooks, std::function<void(std::exception_ptr)> on_task_error)
      : m_hooks(std::move(hooks)), m_on_task_error(std::move(on_task_error)) {}

  /// on_failure or on_finished is set: finished tasks need their outcome reported.
  bool has_finish_hooks() const noexcept { return m_has_finish_hooks; }
  /// A hook that runs as a task starts or ends is set: tasks take the observed path.
  bool has_task_hooks() const noexcept { return m_has_task_hooks; }

  /// A reference to the node's name for the on_submitted hook, taken before the node is queued
  /// (it may then be run and freed at once); none without the hook.
  [[gnu::always_inline]] text_ref name_for_hook(const task_node* node) const {
    if (!m_hooks.on_submitted) [[likely]]
      return {};
    return node->share_name();
  }

  /// Takes the name and lane, not the node: once queued, the node may already be run and freed.
  [[gnu::always_inline]] void submitted(const text_ref& name, offload::lane lane) const {
    if (!m_hooks.on_submitted) [[likely]]
      return;
    submitted_slow(name.text(), lane);
  }

  void started(const std::string* name, offload::lane lane) const {
    if (m_hooks.on_started)
      call(m_hooks.on_started, task_event{view(name), lane, task_outcome::succeeded, nullptr});
  }

  void finished(const std::string* name,
                offload::lane lane,
                task_outcome outcome,
                const std::exception_ptr& error) const {
    if (outcome == task_outcome::failed && m_hooks.on_failure)
      call(m_hooks.on_failure, task_event{view(name), lane, outcome, error});
    if (m_hooks.on_finished)
      call(m_hooks.on_finished, task_event{view(name), lane, outcome, error});
  }

  /// executor_options::on_task_error, for an exception that escaped a task.
  void task_error(std::exception_ptr e) const noexcept {
    if (!m_on_task_error)
      return;
    try {
      m_on_task_error(std::move(e));
    } catch (...) {  // the handler must not throw; if it does, the process still survives
    }
  }

 private:
  [[gnu::noinline]] void submitted_slow(const std::string* name, offload::lane lane) const {
    call(m_hooks.on_submitted, task_event{view(name), lane, task_outcome::succeeded, nullptr});
  }

  static std::string_view view(const std::string* name) noexcept {
    return name ? std::string_view(*name) : std::string_view();
  }

  static void call(const std::function<void(const task_event&)>& hook,
                   const task_event& e) noexcept {
    try {
      hook(e);
    } catch (...) {  // hooks must not throw; if one does, the task's accounting still completes
    }
  }

  task_hooks m_hooks;
  std::function<void(std::exception_ptr)> m_on_task_error;
  bool m_has_finish_hooks = m_hooks.on_failure || m_hooks.on_finished;
  bool m_has_task_hooks = m_has_finish_hooks || m_hooks.on_started;
};

}  // namespace offload::detail
