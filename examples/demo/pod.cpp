#include "pod.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace demo {
namespace {

volatile pid_t g_pod = -1;  // in the helper: the pod to forward signals to

void forward(int sig) {
  if (g_pod > 0) ::kill(g_pod, sig);
}

// In the pod: becomes the program, output to the log.
[[noreturn]] void exec_program(const PodSpec& spec, bool namespaced) {
  if (namespaced) {
    sethostname(spec.name.c_str(), spec.name.size());
    // A private /proc for the pod, as `unshare --mount-proc` does.
    mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  }
  int log = ::open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log < 0 || null < 0) _exit(126);
  dup2(null, 0);
  dup2(log, 1);
  dup2(log, 2);
  std::vector<char*> argv{const_cast<char*>(spec.program.c_str())};
  for (auto& a : spec.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(spec.program.c_str(), argv.data());
  std::fprintf(stderr, "mpod-demo: cannot run %s: %s (build it: cmake --build build)\n", spec.program.c_str(),
               std::strerror(errno));
  _exit(127);
}

// In the helper: enters the namespaces, reports on `ready`, starts the pod, waits for it.
[[noreturn]] void run_helper(const PodSpec& spec, bool namespaces, int ready) {
  setpgid(0, 0);
  for (int fd = 3; fd < 1024; ++fd)  // no copy of the demo's descriptors outlives it here
    if (fd != ready) close(fd);
  const int flags = CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET;
  const bool namespaced = namespaces && unshare(flags) == 0;
  (void)!write(ready, namespaced ? "y" : "n", 1);
  close(ready);
  struct sigaction sa {};
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  const pid_t helper = getpid();
  pid_t pod = fork();  // in new PID namespaces, the first child is PID 1
  if (pod == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!namespaced && getppid() != helper) _exit(125);  // the helper is already gone
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    exec_program(spec, namespaced);
  }
  if (pod < 0) _exit(126);
  g_pod = pod;
  int st = 0;
  while (waitpid(pod, &st, 0) < 0)
    if (errno != EINTR) _exit(126);
  _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

}  // namespace

Pod Pod::start(const PodSpec& spec, bool namespaces) {
  Pod p;
  p.spec_ = spec;
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  pid_t helper = fork();
  if (helper < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (helper == 0) {
    close(ready[0]);
    run_helper(spec, namespaces, ready[1]);
  }
  setpgid(helper, helper);  // also done by the helper: whichever runs first
  close(ready[1]);
  char ok = 0;
  p.namespaced_ = read(ready[0], &ok, 1) == 1 && ok == 'y';
  close(ready[0]);
  p.helper_ = helper;
  return p;
}

int Pod::poll() {
  if (status_ >= 0 || helper_ < 0) return status_;
  int st = 0;
  if (waitpid(helper_, &st, WNOHANG) == helper_) status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return status_;
}

void Pod::signal(int sig) {
  if (poll() < 0) ::kill(helper_, sig);
}

void Pod::kill() {
  if (poll() < 0) {
    ::kill(helper_, SIGKILL);
    int st = 0;
    waitpid(helper_, &st, 0);
    status_ = 128 + SIGKILL;
  }
}

std::string Pod::output() const {
  std::ifstream in(spec_.log_path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace demo
