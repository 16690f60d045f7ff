// Test support: temporary runtime directories, child processes (optionally
// each in its own PID + mount + UTS namespace, i.e. a simulated pod), and the
// checks that decide whether the machine can run a test at all.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mpod::test {

// Path of a program in build/bin.
std::string bin(const std::string& name);

// A fresh directory under /tmp (or `parent`), removed with its contents on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& parent = "/tmp");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct PodOptions {
  // unshare --pid --fork --mount-proc --uts --ipc --net: a pod of its own (PID, mount,
  // UTS, IPC and network namespaces), where the program runs as PID 1
  bool own_pid_ns = false;
  std::string hostname;     // passed to mpod-test-proc as --hostname (only meaningful in a pod)
};

// A child process whose stdout and stderr go to a file.
class Child {
 public:
  static Child spawn(const std::vector<std::string>& argv, const PodOptions& pod = {});
  Child() = default;
  Child(Child&&) noexcept;
  Child& operator=(Child&&) noexcept;
  ~Child();  // kills (SIGKILL) and reaps a child still running

  pid_t pid() const { return pid_; }
  // Waits up to `timeout`; returns the exit code, 128+signal if killed, or -1 on timeout.
  int wait(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  bool running();
  void signal(int sig);
  std::string output() const;  // everything written so far
  // Waits until output() contains `text`; false on timeout or exit.
  bool wait_for_output(const std::string& text, std::chrono::milliseconds timeout = std::chrono::seconds(30));

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
  std::string out_path_;
};

// Waits for all `children`; as soon as one exits with a non-zero code, kills
// the rest (so a failure is reported at once, not after every timeout).
// Returns each exit code (-1 for timed out, 137 for killed).
std::vector<int> wait_all(std::vector<Child>& children,
                          std::chrono::milliseconds timeout = std::chrono::seconds(120));

// Runs to completion; returns {exit code, output}.
struct RunResult {
  int code;
  std::string output;
};
RunResult run(const std::vector<std::string>& argv, const PodOptions& pod = {},
              std::chrono::milliseconds timeout = std::chrono::seconds(60));

// nullopt if the machine can run pods (PID namespaces via unshare), else why not.
std::optional<std::string> cannot_make_pods();
// nullopt if `pages` free 2 MB hugepages are available on a mounted hugetlbfs, else why not.
std::optional<std::string> cannot_use_hugepages(uint64_t pages);

// Hugetlbfs page files of domain `prefix` ("<prefix>map_N") in every mount.
size_t page_files(const std::string& prefix);
// Removes those no live process holds (their flock is free), as a new
// primary of the domain would: a test whose processes were SIGKILLed at its
// end would otherwise keep their hugepages until the machine reboots.
// Returns how many it removed.
size_t remove_dead_page_files(const std::string& prefix);

}  // namespace mpod::test

#define MPOD_SKIP_UNLESS(reason_opt)                                              \
  do {                                                                            \
    if (auto mpod_skip_reason = (reason_opt)) GTEST_SKIP() << *mpod_skip_reason; \
  } while (0)
