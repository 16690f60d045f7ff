// Many children of one benchmark driver (hundreds to thousands), each with
// its stdout and stderr in a file of its own. A pipe per child (as Child in
// common/child_process.hpp keeps) would hold a driver descriptor per child
// for its whole life; a Fleet holds one inotify descriptor and opens a
// child's file only to read what inotify says it wrote.
//
// Like Child: every child gets PR_SET_PDEATHSIG(SIGKILL), so a SIGKILLed
// driver leaves none behind; the destructor SIGKILLs and reaps those still
// running, so an error or ^C unwinding past a Fleet leaves none either. Start
// children from the main thread only (PR_SET_PDEATHSIG fires when the forking
// thread exits).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "common/child_process.hpp"

namespace mpod_bench {

class Fleet {
 public:
  // Creates `out_dir` (its parent must exist) for the children's output files.
  explicit Fleet(std::string out_dir);
  ~Fleet();
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  // Forks and execs argv[0] (a path) with argv, its stdout and stderr
  // appended to <out_dir>/<index>.out. Returns its index. Throws if the file
  // or the fork fails; a failed exec shows as exit status 127.
  size_t start(std::vector<std::string> argv);

  size_t size() const { return kids_.size(); }
  pid_t pid(size_t i) const { return kids_[i].pid; }
  // Everything child i wrote so far (as of the last read).
  const std::string& output(size_t i) const { return kids_[i].text; }
  // True while child i runs; reaps it once it exited (never blocks).
  bool running(size_t i);
  // Child i's exit status (0, its code, or 128 + the signal), -1 while it runs.
  int status(size_t i) const { return kids_[i].pid > 0 ? -1 : kids_[i].status; }

  // Reads new output until done() returns true or the deadline passes;
  // returns done()'s last answer. done() is asked after every batch of
  // output and at least every `period`, so it can also watch clocks and
  // exits. Throws Interrupted on ^C.
  bool wait(const std::function<bool()>& done, Clock::time_point deadline,
            std::chrono::milliseconds period = std::chrono::milliseconds(100));

  // SIGKILLs child i and reaps it.
  void kill_one(size_t i);
  // SIGKILLs every running child, then reaps them all.
  void stop_all();

 private:
  struct Kid {
    pid_t pid = -1;
    int status = 0;
    std::string text;
  };
  void read_all();
  void read_kid(size_t i);
  std::string path_of(size_t i) const;

  std::string dir_;
  int inotify_ = -1;
  std::vector<Kid> kids_;
};

}  // namespace mpod_bench
