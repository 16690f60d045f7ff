#include "fleet.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "common/interrupt.hpp"

namespace mpod_bench {

namespace {

int status_of(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

std::runtime_error sys_error(const std::string& what) { return std::runtime_error(what + ": " + strerror(errno)); }

}  // namespace

Fleet::Fleet(std::string out_dir) : dir_(std::move(out_dir)) {
  if (mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) throw sys_error("mkdir " + dir_);
  inotify_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_ < 0) throw sys_error("inotify_init1");
  if (inotify_add_watch(inotify_, dir_.c_str(), IN_MODIFY) < 0) throw sys_error("inotify_add_watch " + dir_);
}

Fleet::~Fleet() {
  stop_all();
  if (inotify_ >= 0) close(inotify_);
}

std::string Fleet::path_of(size_t i) const { return dir_ + "/" + std::to_string(i) + ".out"; }

size_t Fleet::start(std::vector<std::string> argv) {
  const size_t index = kids_.size();
  const std::string path = path_of(index);
  const int out = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (out < 0) throw sys_error("open " + path);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {  // only async-signal-safe calls until exec
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the driver died before prctl: nobody would kill this child
    dup2(out, STDOUT_FILENO);             // dup2 clears O_CLOEXEC on the copies
    dup2(out, STDERR_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out);
  if (pid < 0) throw sys_error("fork");
  kids_.push_back({pid, 0, {}});
  return index;
}

bool Fleet::running(size_t i) {
  Kid& k = kids_[i];
  if (k.pid <= 0) return false;
  int st = 0;
  if (waitpid(k.pid, &st, WNOHANG) != k.pid) return true;
  k.pid = -1;
  k.status = status_of(st);
  read_kid(i);  // what it wrote before it went
  return false;
}

void Fleet::read_kid(size_t i) {
  const int fd = open(path_of(i).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  std::string& text = kids_[i].text;
  char buf[4096];
  for (;;) {
    const ssize_t n = pread(fd, buf, sizeof buf, off_t(text.size()));
    if (n <= 0) break;
    text.append(buf, size_t(n));
  }
  close(fd);
}

void Fleet::read_all() {
  for (size_t i = 0; i < kids_.size(); ++i) read_kid(i);
}

bool Fleet::wait(const std::function<bool()>& done, Clock::time_point deadline, std::chrono::milliseconds period) {
  for (;;) {
    if (done()) return true;
    throw_if_interrupted();
    const auto now = Clock::now();
    if (now > deadline) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) + std::chrono::milliseconds(1);
    pollfd pfd{inotify_, POLLIN, 0};
    if (poll(&pfd, 1, int(std::min(left, period).count())) <= 0) continue;
    alignas(inotify_event) char buf[64 * 1024];
    std::vector<bool> changed(kids_.size(), false);
    bool overflow = false;
    for (ssize_t n; (n = read(inotify_, buf, sizeof buf)) > 0;) {
      for (ssize_t at = 0; at < n;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(buf + at);
        if (ev->mask & IN_Q_OVERFLOW) overflow = true;
        if (ev->len > 0) {
          char* end = nullptr;
          const unsigned long i = std::strtoul(ev->name, &end, 10);
          if (end != ev->name && std::strcmp(end, ".out") == 0 && i < kids_.size()) changed[i] = true;
        }
        at += ssize_t(sizeof(inotify_event) + ev->len);
      }
    }
    if (overflow) read_all();
    else
      for (size_t i = 0; i < kids_.size(); ++i)
        if (changed[i]) read_kid(i);
  }
}

void Fleet::kill_one(size_t i) {
  Kid& k = kids_[i];
  if (k.pid <= 0) return;
  kill(k.pid, SIGKILL);
  int st = 0;
  while (waitpid(k.pid, &st, 0) < 0 && errno == EINTR) {
  }
  k.pid = -1;
  k.status = status_of(st);
}

void Fleet::stop_all() {
  for (Kid& k : kids_)  // every kill first: the kernel tears them down in parallel
    if (k.pid > 0) kill(k.pid, SIGKILL);
  for (Kid& k : kids_) {
    if (k.pid <= 0) continue;
    int st = 0;
    while (waitpid(k.pid, &st, 0) < 0 && errno == EINTR) {
    }
    k.pid = -1;
    k.status = status_of(st);
  }
}

}  // namespace mpod_bench
