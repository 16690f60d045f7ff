#include "child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "interrupt.hpp"

namespace mpod_bench {

namespace {

int status_of(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

}  // namespace

Clock::time_point deadline_after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

Child::~Child() { kill_now(); }

void Child::start(std::vector<std::string> argv, const ChildOptions& options) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe: " + std::string(strerror(errno)));
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  cpu_set_t set;
  CPU_ZERO(&set);
  if (options.cpu >= 0) CPU_SET(options.cpu, &set);
  poll_period_ = options.poll_period;
  const pid_t parent = getpid();
  started_ = Clock::now();
  pid_ = fork();
  if (pid_ == 0) {  // only async-signal-safe calls until exec
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the driver died before prctl: nobody would kill this child
    if (options.cpu >= 0) sched_setaffinity(0, sizeof set, &set);
    dup2(p[1], STDOUT_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
  close(p[1]);
  out_ = p[0];
  if (pid_ < 0) throw std::runtime_error("fork: " + std::string(strerror(errno)));
  name_ = std::filesystem::path(argv[0]).filename().string();
}

ReadEnd Child::read_until(const std::string& text, int times, Clock::time_point deadline, Child* partner) {
  for (;;) {
    if (!text.empty() && count(text) >= times) return ReadEnd::found;
    throw_if_interrupted();
    if (Clock::now() > deadline) return ReadEnd::deadline;
    if (partner && partner->failed()) return ReadEnd::partner_failed;
    pollfd pfd{out_, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(poll_period_.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = read(out_, buf, sizeof buf);
    if (n <= 0) return ReadEnd::end_of_file;
    out_text_.append(buf, static_cast<size_t>(n));
  }
}

int Child::finish(Clock::time_point deadline, Child* partner) {
  if (read_until("", 1, deadline, partner) != ReadEnd::end_of_file) {
    kill_now();
    return -1;
  }
  return wait_exit();
}

bool Child::failed() {
  if (pid_ <= 0) return status_ != 0;
  int st = 0;
  if (waitpid(pid_, &st, WNOHANG) != pid_) return false;
  pid_ = -1;
  status_ = status_of(st);
  return status_ != 0;
}

int Child::wait_exit() {
  if (pid_ > 0) {
    int st = 0;
    while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    status_ = status_of(st);
  }
  return status_;
}

void Child::kill_now() {
  if (pid_ > 0) kill(pid_, SIGKILL);
  wait_exit();
  if (out_ >= 0) close(out_);
  out_ = -1;
}

int Child::count(const std::string& text) const {
  int n = 0;
  for (auto at = out_text_.find(text); at != std::string::npos; at = out_text_.find(text, at + 1)) ++n;
  return n;
}

}  // namespace mpod_bench
