#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <sys/types.h>

/// Test fixtures around real processes. Everything they start they stop, by PID, in their
/// destructors.
namespace offload::broker::testing {

/// A temporary directory, removed with its contents on destruction.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return m_path; }

 private:
  std::string m_path;
};

/// redis-server or rabbitmq-server started by scripts/lib/brokers.sh in a directory of its own.
class broker_process {
 public:
  /// Starts `name` ("redis" or "rabbitmq") on a free port (or `port`); throws std::runtime_error
  /// with the script's message (which shows the broker's log) if it does not come up.
  explicit broker_process(std::string name, int port = 0);
  ~broker_process();
  broker_process(const broker_process&) = delete;
  broker_process& operator=(const broker_process&) = delete;

  int port() const { return m_port; }
  void stop();     ///< stops it (by PID); its data directory stays
  void restart();  ///< stop() then start on the same port and directory

 private:
  void start();
  std::string m_name;
  temp_dir m_dir;
  int m_port;
  bool m_running = false;
};

/// A child process (the worker binary); stderr goes to a file.
class child_process {
 public:
  explicit child_process(std::vector<std::string> argv);
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  void kill_hard();  ///< SIGKILL: a crash
  /// SIGTERM, then waits up to `grace`, then SIGKILL. Returns the exit status as waitpid gives it.
  int terminate(std::chrono::milliseconds grace = std::chrono::milliseconds{10000});
  /// Waits up to `timeout` for it to exit by itself; returns the exit code or -1 if still running.
  int wait_exit(std::chrono::milliseconds timeout);
  std::string stderr_text() const;

 private:
  temp_dir m_dir;
  pid_t m_pid = -1;
};

/// Runs a shell command; returns its stdout; throws std::runtime_error with stdout+stderr if it
/// exits non-zero.
std::string run_command(const std::string& cmd);

}  // namespace offload::broker::testing
