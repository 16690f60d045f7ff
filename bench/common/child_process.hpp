// Child processes of a benchmark driver: DPDK's programs, mpod's secondaries
// and servers, run as separate processes whose stdout the driver reads for
// their results.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace mpod_bench {

using Clock = std::chrono::steady_clock;

// The time `seconds` from now, for Child's deadlines.
Clock::time_point deadline_after(double seconds);

// How a Child is started and watched.
struct ChildOptions {
  // The only CPU the child may run on (set before exec, so its threads
  // inherit it); -1: whatever CPUs this process may use.
  int cpu = -1;
  // Longest sleep in poll() before the deadline, ^C and a partner are checked
  // again. Output wakes the reader at once either way; each timed-out
  // wake-up may preempt a measured thread, hence rare by default.
  std::chrono::milliseconds poll_period{1000};
};

// Why Child::read_until() returned.
enum class ReadEnd {
  found,           // the text appeared as often as asked
  end_of_file,     // the child closed its stdout (usually: it exited)
  deadline,        // the deadline passed first
  partner_failed,  // the partner exited with a non-zero status first
};

// A program run with its stdout captured through a pipe (stderr passes
// through to the driver's). Killed and reaped by the destructor if still
// running, so an error or ^C unwinding past it leaves no process behind; and
// killed by the kernel if the driver dies (PR_SET_PDEATHSIG), so a SIGKILLed
// driver leaves none either. PR_SET_PDEATHSIG fires when the forking *thread*
// exits: start children from the main thread only.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  // Forks and execs argv[0] (a path: no PATH search) with argv. Throws if the
  // pipe or the fork fails; a failed exec shows as exit status 127.
  void start(std::vector<std::string> argv, const ChildOptions& options = {});

  // Reads stdout until `text` has appeared `times` times in everything it
  // printed (an empty `text`: until end of file), the deadline passes, or
  // `partner` exited or was killed with a non-zero status. Throws Interrupted
  // on ^C.
  ReadEnd read_until(const std::string& text, int times, Clock::time_point deadline, Child* partner = nullptr);

  // Reads stdout to its end and reaps the child. Returns its exit status (0,
  // its exit code, or 128 + the signal that killed it), or -1 if the deadline
  // passed or `partner` failed first: then the child is killed. Throws
  // Interrupted on ^C.
  int finish(Clock::time_point deadline, Child* partner = nullptr);

  // True once the child exited (or was killed) with anything but status 0.
  // Never blocks: a child still running has not failed.
  bool failed();

  const std::string& output() const { return out_text_; }  // all of stdout read so far
  const std::string& name() const { return name_; }        // argv[0]'s file name, for messages
  Clock::time_point started() const { return started_; }   // taken just before the fork

 private:
  int wait_exit();
  void kill_now();
  int count(const std::string& text) const;

  pid_t pid_ = -1;
  int out_ = -1;
  int status_ = 0;
  std::chrono::milliseconds poll_period_{1000};
  std::string out_text_, name_;
  Clock::time_point started_;
};

}  // namespace mpod_bench
