#include "broker_process.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace offload::broker::testing {

temp_dir::temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "offload-test-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp failed");
  }
  m_path = pattern;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(m_path, ec);
}

std::string run_command(const std::string& cmd) {
  const std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (p == nullptr) {
    throw std::runtime_error("popen failed: " + cmd);
  }
  std::string out;
  char buf[4096];
  std::size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
    out.append(buf, n);
  }
  const int status = pclose(p);
  if (status != 0) {
    throw std::runtime_error("command failed: " + cmd + "\n" + out);
  }
  return out;
}

namespace {

std::string brokers_script() {
  return std::string(OFFLOAD_SOURCE_DIR) + "/scripts/lib/brokers.sh";
}

}  // namespace

broker_process::broker_process(std::string name, int port) : m_name(std::move(name)), m_port(port) {
  start();
}

broker_process::~broker_process() {
  try {
    stop();
  } catch (...) {
  }
}

void broker_process::start() {
  const std::string dir = m_dir.path() + "/" + m_name;
  const std::string out = run_command(brokers_script() + " start " + m_name + " " + dir + " " +
                                      (m_port > 0 ? std::to_string(m_port) : std::string()));
  // The port is the last line of the output.
  std::istringstream lines(out);
  std::string line, last;
  while (std::getline(lines, line)) {
    if (!line.empty()) {
      last = line;
    }
  }
  m_port = std::stoi(last);
  m_running = true;
}

void broker_process::stop() {
  if (m_running) {
    run_command(brokers_script() + " stop " + m_dir.path() + "/" + m_name);
    m_running = false;
  }
}

void broker_process::restart() {
  stop();
  start();
}

child_process::child_process(std::vector<std::string> argv) {
  const std::string err = m_dir.path() + "/stderr.log";
  m_pid = fork();
  if (m_pid < 0) {
    throw std::runtime_error("fork failed");
  }
  if (m_pid == 0) {
    std::freopen(err.c_str(), "w", stderr);
    std::vector<char*> args;
    for (auto& a : argv) {
      args.push_back(a.data());
    }
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::perror("execv");
    _exit(127);
  }
}

child_process::~child_process() {
  if (m_pid > 0) {
    terminate(std::chrono::milliseconds{3000});
  }
}

void child_process::kill_hard() {
  if (m_pid > 0) {
    ::kill(m_pid, SIGKILL);
    int status = 0;
    waitpid(m_pid, &status, 0);
    m_pid = -1;
  }
}

int child_process::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (m_pid > 0) {
    int status = 0;
    if (waitpid(m_pid, &status, WNOHANG) == m_pid) {
      m_pid = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  return -1;
}

int child_process::terminate(std::chrono::milliseconds grace) {
  if (m_pid <= 0) {
    return -1;
  }
  ::kill(m_pid, SIGTERM);
  const int code = wait_exit(grace);
  if (code >= 0) {
    return code;
  }
  kill_hard();
  return 128 + SIGKILL;
}

std::string child_process::stderr_text() const {
  std::ifstream in(m_dir.path() + "/stderr.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace offload::broker::testing
