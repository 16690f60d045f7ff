// A simulated Kubernetes pod for the demo: a program run as PID 1 of new PID,
// UTS (own hostname), mount (own /proc), IPC and network namespaces, like
// `unshare --pid --fork --mount-proc --uts --ipc --net`; or, where the machine
// does not allow namespaces (not root, or a restricted container), as a
// plain process.
//
// Each pod has a helper process between it and the demo (the one that
// entered the namespaces; the pod is its child). The helper forwards SIGINT
// and SIGTERM to the pod and exits with the pod's status; if the helper is
// killed, the kernel kills the pod (and so its whole namespace) too. Pods and
// helpers run in process groups of their own, so a Ctrl-C at the terminal
// reaches only the demo, which forwards it once.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace demo {

struct PodSpec {
  std::string name;                // the pod's hostname, and how the demo names it
  std::string program;             // absolute path
  std::vector<std::string> args;   // without argv[0]
  std::string log_path;            // stdout and stderr go here
};

class Pod {
 public:
  // Starts `spec`; in namespaces when `namespaces` and the machine allows it
  // (else plainly: see namespaced()). Throws std::runtime_error on fork failure.
  static Pod start(const PodSpec& spec, bool namespaces);

  const std::string& name() const { return spec_.name; }
  bool namespaced() const { return namespaced_; }
  // Exit code, 128+signal if killed, or -1 while it runs.
  int poll();
  void signal(int sig);  // forwarded to the pod's program
  void kill();           // SIGKILL: the pod and its namespace die
  std::string output() const;

 private:
  PodSpec spec_;
  pid_t helper_ = -1;
  bool namespaced_ = false;
  int status_ = -1;
};

}  // namespace demo
