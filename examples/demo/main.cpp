// mpod-demo: a primary and N pods sharing memory.
//
// The primary starts in this process, reserves a shared "board", and starts
// N pods. Each pod runs in its own PID, UTS and mount namespace where the
// machine allows (so every pod is PID 1 with its own hostname, exactly the
// layout that breaks DPDK), else as a plain process. Each pod attaches as a
// secondary, writes who it is into its slot on the board, and waits until
// every pod has attached; the primary then prints who attached from which pod.
//
//   mpod-demo [--pods=N] [runtime options]
// Memory: hugepages when a hugetlbfs with free pages is mounted, else plain
// files (--no-huge). Runtime dir: a fresh temporary one unless --runtime-dir.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "mpod/runtime.hpp"

namespace {

using namespace mpod;

constexpr int kMaxPods = 64;

struct Slot {
  std::atomic<uint32_t> written;
  int32_t pid;
  uint64_t pid_ns;
  char hostname[64];
  char process_id[33];
  char message[64];
  uint64_t board_addr_seen;
};

struct Board {
  std::atomic<uint32_t> attached;
  std::atomic<uint32_t> done;  // set by the primary once it has printed the table
  Slot slots[kMaxPods];
};

bool hugepages_usable(uint64_t mb) {
  FILE* f = std::fopen("/proc/mounts", "r");
  if (!f) return false;
  char dev[256], path[256], type[64];
  bool mounted = false;
  while (std::fscanf(f, "%255s %255s %63s %*[^\n]", dev, path, type) == 3)
    if (!std::strcmp(type, "hugetlbfs") && access(path, W_OK) == 0) mounted = true;
  std::fclose(f);
  if (!mounted) return false;
  FILE* fp = std::fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
  unsigned long free_pages = 0;
  if (fp) {
    if (std::fscanf(fp, "%lu", &free_pages) != 1) free_pages = 0;
    std::fclose(fp);
  }
  return free_pages * 2 >= mb;
}

// Starts `argv` as PID 1 of new PID+UTS+mount namespaces named `hostname`.
// Returns the pid of the intermediate process (its exit status is the pod's),
// or -1 if namespaces are not allowed here (the caller then runs it plainly).
pid_t spawn_pod(const std::vector<std::string>& argv, const std::string& hostname, bool use_namespaces) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return -1;
  pid_t mid = fork();
  if (mid < 0) return -1;
  if (mid > 0) {
    close(ready[1]);
    char ok = 0;
    ssize_t n = read(ready[0], &ok, 1);
    close(ready[0]);
    if (n == 1 && ok == 'n') {  // namespaces refused
      waitpid(mid, nullptr, 0);
      return -1;
    }
    return mid;
  }
  // Child: drop every inherited descriptor but the pipe, so no copy of the
  // primary's lock descriptors outlives the primary in this helper process.
  close(ready[0]);
  for (int fd = 3; fd < 1024; ++fd)
    if (fd != ready[1]) close(fd);
  if (use_namespaces && unshare(CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWNS) != 0) {
    (void)!write(ready[1], "n", 1);
    _exit(0);
  }
  (void)!write(ready[1], "y", 1);
  close(ready[1]);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pod = fork();  // the first child in the new PID namespace is its PID 1
  if (pod == 0) {
    if (use_namespaces) {
      sethostname(hostname.c_str(), hostname.size());
      // A private /proc for the pod, as `unshare --mount-proc` does.
      mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
      mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    }
    execv("/proc/self/exe", cargv.data());
    std::perror("mpod-demo: exec");
    _exit(127);
  }
  int st = 0;
  if (pod < 0 || waitpid(pod, &st, 0) < 0) _exit(126);
  _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

pid_t spawn_plain(const std::vector<std::string>& argv) {
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    execv("/proc/self/exe", cargv.data());
    _exit(127);
  }
  return pid;
}

int run_pod(int index, const Options& o) {
  auto rt = Runtime::start(o);
  auto board_zone = rt->memzones().lookup("demo_board");
  if (!board_zone) {
    std::fprintf(stderr, "pod %d: memzone demo_board not found\n", index);
    return 1;
  }
  auto* board = static_cast<Board*>(board_zone->addr);
  Slot& s = board->slots[index];
  const ProcessInfo& me = rt->self();
  s.pid = me.pid;
  s.pid_ns = me.pid_ns;
  std::snprintf(s.hostname, sizeof s.hostname, "%s", me.hostname.c_str());
  std::snprintf(s.process_id, sizeof s.process_id, "%s", me.id.hex().c_str());
  std::snprintf(s.message, sizeof s.message, "hello from pod %d", index);
  s.board_addr_seen = reinterpret_cast<uintptr_t>(board_zone->addr);
  s.written.store(1, std::memory_order_release);
  board->attached.fetch_add(1);
  // Stay attached until the primary has seen everyone at once.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!board->done.load()) {
    if (std::chrono::steady_clock::now() > deadline) return 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return 0;
}

int run_primary(int pods, Options o, const std::vector<std::string>& runtime_args) {
  const bool user_no_huge = o.no_huge;
  const bool huge = !o.no_huge && hugepages_usable(o.memory_mb ? o.memory_mb : 64);
  if (!huge) o.no_huge = true;
  std::string tmp;
  if (o.runtime_dir.empty()) {
    char tmpl[] = "/tmp/mpod-demo-XXXXXX";
    if (!mkdtemp(tmpl)) {
      std::perror("mpod-demo: mkdtemp");
      return 1;
    }
    tmp = o.runtime_dir = tmpl;
  }
  o.proc_type = ProcType::primary;
  int rc = 0;
  {
    auto rt = Runtime::start(o);
    auto zone = rt->memzones().reserve("demo_board", sizeof(Board));
    auto* board = static_cast<Board*>(zone.addr);
    std::printf("mpod demo: primary %s (pid %d) on %s memory, runtime dir %s\n",
                rt->self().id.short_hex().c_str(), rt->self().pid,
                huge ? "2 MB hugepage" : (user_no_huge ? "plain-file (--no-huge)" : "plain-file (no hugepages set up)"), o.runtime_dir.c_str());

    std::vector<std::string> argv = {"mpod-demo", "--as-pod=0", "--proc-type=secondary",
                                     "--runtime-dir=" + o.runtime_dir, "--file-prefix=" + o.file_prefix};
    if (o.no_huge) argv.push_back("--no-huge");
    for (auto& a : runtime_args) argv.push_back(a);
    bool namespaces = geteuid() == 0;
    std::vector<pid_t> children;
    for (int k = 0; k < pods; ++k) {
      argv[1] = "--as-pod=" + std::to_string(k);
      pid_t pid = namespaces ? spawn_pod(argv, "pod-" + std::to_string(k), true) : -1;
      if (pid < 0) {
        if (namespaces) std::printf("mpod demo: PID namespaces not allowed here; pods run as plain processes\n");
        namespaces = false;
        pid = spawn_plain(argv);
      }
      children.push_back(pid);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (board->attached.load() < static_cast<uint32_t>(pods) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    uint32_t attached = board->attached.load();

    std::printf("\n%-7s %-10s %-12s %-12s %-10s %-16s %s\n", "POD", "HOSTNAME", "PID IN POD", "PID NS",
                "PROCESS", "BOARD ADDRESS", "MESSAGE");
    for (int k = 0; k < pods; ++k) {
      const Slot& s = board->slots[k];
      if (!s.written.load(std::memory_order_acquire)) {
        std::printf("pod-%-3d (did not attach)\n", k);
        continue;
      }
      std::printf("pod-%-3d %-10s %-12d %-12llu %-10.8s 0x%-14llx %s\n", k, s.hostname, s.pid,
                  static_cast<unsigned long long>(s.pid_ns), s.process_id,
                  static_cast<unsigned long long>(s.board_addr_seen), s.message);
    }
    size_t live = 0;
    for (auto& p : rt->processes()) live += p.alive;
    std::printf("\n%u of %d pods attached%s; %zu processes alive at once; every pod saw the board at %p\n",
                attached, pods, namespaces ? ", each as PID 1 of its own PID namespace" : "", live, zone.addr);
    board->done.store(1);
    for (pid_t c : children) {
      int st = 0;
      waitpid(c, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) rc = 1;
    }
    if (attached != static_cast<uint32_t>(pods)) rc = 1;
  }
  if (!tmp.empty()) std::filesystem::remove_all(tmp);
  std::printf("mpod demo: %s\n", rc == 0 ? "all pods attached and exited cleanly" : "FAILED");
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  int pods = 4, as_pod = -1;
  std::vector<char*> rargs{argv[0]};
  std::vector<std::string> passthrough;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.starts_with("--pods=")) pods = std::atoi(a.c_str() + 7);
    else if (a.starts_with("--as-pod=")) as_pod = std::atoi(a.c_str() + 9);
    else if (a == "--help" || a == "-h") {
      std::printf("usage: mpod-demo [--pods=N] [runtime options]\n\n%s", options_usage());
      return 0;
    } else rargs.push_back(argv[i]);
  }
  if (pods < 1 || pods > kMaxPods) {
    std::fprintf(stderr, "mpod-demo: --pods must be 1 to %d\n", kMaxPods);
    return 2;
  }
  try {
    Options o;
    int n = static_cast<int>(rargs.size());
    int first = parse_options(n, rargs.data(), o);
    if (first < n) {
      std::fprintf(stderr, "mpod-demo: unexpected argument '%s'\n", rargs[first]);
      return 2;
    }
    if (as_pod >= 0) return run_pod(as_pod, o);
    // Pods get the same -m/--log-level etc. the user gave.
    for (int i = 1; i < n; ++i) {
      std::string a = rargs[i];
      if (!a.starts_with("--runtime-dir") && !a.starts_with("--file-prefix") && a != "--no-huge" &&
          !a.starts_with("--proc-type"))
        passthrough.push_back(a);
    }
    return run_primary(pods, o, passthrough);
  } catch (const Error& e) {
    std::fprintf(stderr, "mpod-demo: error: %s\n", e.what());
    return 1;
  }
}
