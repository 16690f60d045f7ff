#include "process_harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "src/os/os.hpp"

namespace mpod::test {

std::string bin(const std::string& name) { return std::string(MPOD_BIN_DIR) + "/" + name; }

TempDir::TempDir(const std::string& parent) {
  std::string tmpl = parent + "/mpod-test-XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed under " + parent);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Child Child::spawn(const std::vector<std::string>& argv_in, const PodOptions& pod) {
  std::vector<std::string> argv;
  if (pod.own_pid_ns) {
    // --kill-child: if the test kills unshare, the pod's PID 1 dies with it.
    argv = {"unshare", "--pid", "--fork", "--mount-proc", "--uts", "--ipc", "--net", "--kill-child", "--"};
  }
  argv.insert(argv.end(), argv_in.begin(), argv_in.end());
  if (!pod.hostname.empty()) argv.insert(argv.begin() + (pod.own_pid_ns ? 10 : 1), "--hostname=" + pod.hostname);

  Child c;
  char tmpl[] = "/tmp/mpod-child-out-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  c.out_path_ = tmpl;
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::execvp(cargv[0], cargv.data());
    std::fprintf(stderr, "exec %s failed: %s\n", cargv[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(fd);
  c.pid_ = pid;
  return c;
}

Child::Child(Child&& o) noexcept { *this = std::move(o); }

Child& Child::operator=(Child&& o) noexcept {
  pid_ = std::exchange(o.pid_, -1);
  status_ = o.status_;
  reaped_ = o.reaped_;
  out_path_ = std::move(o.out_path_);
  o.out_path_.clear();
  return *this;
}

Child::~Child() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (!out_path_.empty()) ::unlink(out_path_.c_str());
}

int Child::wait(std::chrono::milliseconds timeout) {
  if (reaped_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

bool Child::running() {
  if (reaped_) return false;
  return wait(std::chrono::milliseconds(0)) == -1;
}

void Child::signal(int sig) {
  if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
}

std::string Child::output() const {
  std::ifstream in(out_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Child::wait_for_output(const std::string& text, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (output().find(text) != std::string::npos) return true;
    if (!running() || std::chrono::steady_clock::now() >= deadline)
      return output().find(text) != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::vector<int> wait_all(std::vector<Child>& children, std::chrono::milliseconds timeout) {
  std::vector<int> codes(children.size(), -1);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t done = 0;
  bool failed = false;
  while (done < children.size() && std::chrono::steady_clock::now() < deadline) {
    for (size_t i = 0; i < children.size(); ++i) {
      if (codes[i] != -1) continue;
      codes[i] = children[i].wait(std::chrono::milliseconds(0));
      if (codes[i] == -1) continue;
      ++done;
      if (codes[i] != 0 && !failed) {
        failed = true;
        for (auto& c : children) c.signal(SIGKILL);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (size_t i = 0; i < children.size(); ++i)
    if (codes[i] == -1) children[i].signal(SIGKILL);
  return codes;
}

RunResult run(const std::vector<std::string>& argv, const PodOptions& pod,
              std::chrono::milliseconds timeout) {
  Child c = Child::spawn(argv, pod);
  int code = c.wait(timeout);
  return {code, c.output()};
}

std::optional<std::string> cannot_make_pods() {
  static std::optional<std::string> verdict = []() -> std::optional<std::string> {
    if (::geteuid() != 0) return "simulated pods need root (unshare --pid --mount-proc); run the tests as root, as CI does";
    auto r = run({"unshare", "--pid", "--fork", "--mount-proc", "--uts", "--ipc", "--net", "--kill-child", "--", "true"});
    if (r.code != 0) return "unshare --pid --fork --mount-proc --uts --ipc --net failed here (exit " + std::to_string(r.code) + "): " + r.output;
    return std::nullopt;
  }();
  return verdict;
}

std::optional<std::string> cannot_use_hugepages(uint64_t pages) {
  for (auto& m : os::hugetlbfs_mounts()) {
    if (m.page_size != (2ull << 20)) continue;
    if (::access(m.path.c_str(), W_OK) != 0) return "hugetlbfs at " + m.path + " is not writable by this user";
    if (m.free_pages >= pages) return std::nullopt;
    return "need " + std::to_string(pages) + " free 2 MB hugepages, " + std::to_string(m.free_pages) +
           " free (echo 256 > /proc/sys/vm/nr_hugepages)";
  }
  return std::string("no 2 MB hugetlbfs is mounted (mount -t hugetlbfs nodev /dev/hugepages)");
}

namespace {
// Every page file of `prefix`, by path.
std::vector<std::string> page_file_paths(const std::string& prefix) {
  std::vector<std::string> out;
  for (auto& m : os::hugetlbfs_mounts()) {
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(m.path, ec))
      if (e.path().filename().string().starts_with(prefix + "map_")) out.push_back(e.path());
  }
  return out;
}
}  // namespace

size_t page_files(const std::string& prefix) { return page_file_paths(prefix).size(); }

size_t remove_dead_page_files(const std::string& prefix) {
  size_t removed = 0;
  for (auto& path : page_file_paths(prefix)) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && ::unlink(path.c_str()) == 0) ++removed;
    ::close(fd);
  }
  return removed;
}

}  // namespace mpod::test
