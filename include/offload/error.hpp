#pragma once

/// @file error.hpp
/// @brief The exceptions offload reports through futures and at submission.

#include <stdexcept>
#include <string>

namespace offload {

/// Base of every offload error.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The executor refused a submission: it is shutting down or shut down.
class rejected : public error {
 public:
  using error::error;
};

/// The task was cancelled before it ran: by future::cancel() or by shutdown(shutdown_mode::cancel).
class cancelled : public error {
 public:
  using error::error;
};

/// The task's deadline passed before it started; it never ran.
class expired : public error {
 public:
  using error::error;
};

}  // namespace offload
