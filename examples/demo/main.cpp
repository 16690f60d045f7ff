// mpod-demo: DPDK's client_server_mp example across pods.
//
//   mpod-demo [--clients=N] [--packets=N] [runtime options]
//
// Runs mpod-mp-server and N mpod-mp-client processes (examples/client_server_mp),
// each as PID 1 of a pod of its own (own PID, UTS, mount, IPC and network
// namespaces: the layout that breaks DPDK's multi-process mode) where the
// machine allows it, else as plain processes. Half of the clients start
// before the server (they wait for it), the others after. The demo prints
// each pod's summary line, checks that they add up, checks that nothing was
// left behind, and ends with one result line. Exit 0 when everything checks out.
//
// Memory: hugepages when a hugetlbfs with enough free pages is mounted, else
// plain files (--no-huge). Runtime dir: a fresh temporary one (removed at the
// end) unless --runtime-dir. File prefix: unique to this run unless --file-prefix.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "mpod/runtime.hpp"
#include "pod.hpp"

namespace {

using namespace mpod;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kMaxClients = 32;
constexpr auto kTimeout = std::chrono::seconds(120);

std::atomic<int> g_signals{0};
void on_signal(int) { g_signals.fetch_add(1); }

std::vector<fs::path> hugetlbfs_mounts() {
  std::vector<fs::path> out;
  FILE* f = std::fopen("/proc/mounts", "r");
  if (!f) return out;
  char dev[256], path[256], type[64];
  while (std::fscanf(f, "%255s %255s %63s %*[^\n]", dev, path, type) == 3)
    if (!std::strcmp(type, "hugetlbfs")) out.emplace_back(path);
  std::fclose(f);
  return out;
}

bool hugepages_usable(uint64_t mb) {
  bool writable = false;
  for (auto& m : hugetlbfs_mounts()) writable = writable || access(m.c_str(), W_OK) == 0;
  if (!writable) return false;
  FILE* fp = std::fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
  unsigned long free_pages = 0;
  if (fp) {
    if (std::fscanf(fp, "%lu", &free_pages) != 1) free_pages = 0;
    std::fclose(fp);
  }
  return free_pages * 2 >= mb;
}

// Hugepage files of `prefix` still present (the last process out removes them).
size_t leftover_page_files(const std::string& prefix) {
  size_t n = 0;
  std::error_code ec;
  for (auto& m : hugetlbfs_mounts())
    for (auto& e : fs::directory_iterator(m, ec))
      n += e.path().filename().string().starts_with(prefix + "map_");
  return n;
}

std::string summary_of(const std::string& out) {
  std::string last;
  size_t at = 0;
  while ((at = out.find("summary ", at)) != std::string::npos) {
    if (at == 0 || out[at - 1] == '\n') last = out.substr(at, out.find('\n', at) - at);
    ++at;
  }
  return last;
}

struct Settings {
  int clients = 4;
  uint64_t packets = 500000;
  Options runtime;
  std::vector<std::string> runtime_args;  // passed to every pod as given
};

// Waits until `pred` or a pod fails or time runs out; forwards signals.
template <class Pred>
bool wait_until(std::vector<demo::Pod>& pods, Pred pred, Clock::time_point deadline, int* forwarded) {
  while (!pred()) {
    for (auto& p : pods)
      if (p.poll() > 0) return false;
    if (Clock::now() > deadline) return false;
    if (int s = g_signals.load(); s > *forwarded) {
      *forwarded = s;
      for (auto& p : pods) p.signal(SIGINT);  // a second one makes them quit at once
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

int run(const Settings& s) {
  Options o = s.runtime;
  const uint64_t mb = o.memory_mb ? o.memory_mb : 64;
  const bool huge = !o.no_huge && hugepages_usable(mb + 64);
  std::string tmp;
  char tmpl[] = "/tmp/mpod-demo-XXXXXX";
  if (!mkdtemp(tmpl)) {
    std::fprintf(stderr, "mpod-demo: cannot create a directory under /tmp: %s\n", std::strerror(errno));
    return 1;
  }
  tmp = tmpl;
  const bool own_dir = o.runtime_dir.empty();
  if (own_dir) {
    o.runtime_dir = tmp + "/run";
    fs::create_directory(o.runtime_dir);
  }
  if (o.file_prefix == "mpod") o.file_prefix = "mpod-demo-" + std::to_string(getpid());

  std::vector<std::string> rt = s.runtime_args;
  rt.push_back("--runtime-dir=" + o.runtime_dir);
  rt.push_back("--file-prefix=" + o.file_prefix);
  if (!huge && !o.no_huge) rt.push_back("--no-huge");

  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = '\0';
  const fs::path bin = fs::path(self).parent_path();
  auto client = [&](int k) {
    auto args = rt;
    args.insert(args.end(), {"--wait-primary=30", "--", "--client-id", std::to_string(k)});
    return demo::PodSpec{"client-" + std::to_string(k), bin / "mpod-mp-client", args,
                         tmp + "/client-" + std::to_string(k) + ".log"};
  };
  auto server_args = rt;
  server_args.insert(server_args.end(), {"--", "--clients", std::to_string(s.clients), "--packets", std::to_string(s.packets)});
  const demo::PodSpec server{"server", bin / "mpod-mp-server", server_args, tmp + "/server.log"};

  const bool try_ns = geteuid() == 0;
  std::printf("mpod demo: DPDK's client_server_mp: 1 server and %d clients, each in a pod of its own\n", s.clients);
  std::printf("  memory: %s; runtime dir %s; prefix %s\n",
              huge ? "2 MB hugepages" : (o.no_huge ? "plain files (--no-huge)" : "plain files (no writable hugetlbfs with enough free 2 MB pages)"),
              o.runtime_dir.c_str(), o.file_prefix.c_str());

  // Clients 0..N/2-1 first (they wait for the primary), then the server, then the rest.
  const int early = s.clients / 2;
  std::vector<demo::Pod> pods;
  int forwarded = 0;
  const auto deadline = Clock::now() + kTimeout;
  bool started = true;
  for (int k = 0; k < early; ++k) pods.push_back(demo::Pod::start(client(k), try_ns));
  for (int k = 0; k < early && started; ++k)
    started = wait_until(pods, [&] { return pods[k].output().find("waiting for the primary") != std::string::npos; },
                         deadline, &forwarded);
  if (started) {
    pods.push_back(demo::Pod::start(server, try_ns));
    demo::Pod& srv = pods.back();
    started = wait_until(pods, [&] { return srv.output().find("primary ready") != std::string::npos; }, deadline,
                         &forwarded);
  }
  for (int k = early; k < s.clients && started; ++k) pods.push_back(demo::Pod::start(client(k), try_ns));
  const bool namespaced = pods[0].namespaced();
  if (try_ns && !namespaced)
    std::printf("  note: this machine does not allow PID namespaces here; the pods run as plain processes\n");
  else if (!try_ns)
    std::printf("  note: pods need root (for namespaces); running them as plain processes\n");
  std::printf("  started: ");
  for (auto& p : pods) std::printf("%s%s", p.name().c_str(), &p == &pods.back() ? "\n" : ", ");

  // Wait for all of them.
  bool timed_out = !started && Clock::now() > deadline;
  auto done = [&] {
    for (auto& p : pods)
      if (p.poll() < 0) return false;
    return true;
  };
  while (!done()) {
    if (Clock::now() > deadline) {
      timed_out = true;
      break;
    }
    if (int sig = g_signals.load(); sig > forwarded) {
      forwarded = sig;
      for (auto& p : pods) p.signal(SIGINT);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (timed_out || !started)
    for (auto& p : pods) p.kill();

  // Report: who attached from where (as the server saw it), then each pod's summary.
  for (auto& p : pods) {
    if (p.name() != "server") continue;
    const std::string out = p.output();
    const std::regex attached("server: (client [0-9]+ attached .*)");
    for (std::sregex_iterator it(out.begin(), out.end(), attached), end;
         it != end; ++it)
      std::printf("  server saw: %s\n", (*it)[1].str().c_str());
  }
  std::printf("\n%-10s %-5s %s\n", "POD", "EXIT", "LAST LINE");
  bool ok = !timed_out && pods.size() == size_t(s.clients) + 1;
  uint64_t rx = 0, bad = 0, tx = 0, drops = 0;
  bool server_seen = false;
  for (auto& p : pods) {
    const std::string out = p.output(), line = summary_of(out);
    std::printf("%-10s %-5d %s\n", p.name().c_str(), p.poll(), line.empty() ? "(no summary)" : line.c_str());
    std::smatch m;
    if (std::regex_match(line, m, std::regex("summary role=server tx=([0-9]+) clients=[0-9]+ drops=([0-9]+)"))) {
      tx = std::stoull(m[1]);
      drops = std::stoull(m[2]);
      server_seen = true;
    } else if (std::regex_match(line, m, std::regex("summary role=client id=[0-9]+ rx=([0-9]+) bad=([0-9]+).*"))) {
      rx += std::stoull(m[1]);
      bad += std::stoull(m[2]);
    } else {
      ok = false;
    }
    if (p.poll() != 0) {
      ok = false;
      std::printf("---- %s output:\n%s----\n", p.name().c_str(), out.c_str());
    }
  }
  const bool stopped = g_signals.load() > 0;
  if (!stopped) ok = ok && server_seen && rx == tx && tx + drops == s.packets && bad == 0;
  else ok = ok && server_seen && rx == tx && bad == 0;

  // Nothing left behind: no registrations, no hugepage files (then remove the directory).
  const fs::path procs = fs::path(o.runtime_dir) / o.file_prefix / "procs";
  std::error_code ec;
  const bool procs_clean = !fs::exists(procs, ec) || fs::is_empty(procs, ec);
  const size_t pages_left = leftover_page_files(o.file_prefix);
  if (!procs_clean || pages_left) {
    ok = false;
    if (!procs_clean) std::printf("mpod demo: process registrations left behind in %s\n", procs.c_str());
    if (pages_left) std::printf("mpod demo: %zu hugepage files of prefix %s left behind\n", pages_left, o.file_prefix.c_str());
  }
  if (own_dir) fs::remove_all(tmp, ec);
  else {
    fs::remove_all(fs::path(o.runtime_dir) / o.file_prefix, ec);
    for (auto& f : fs::directory_iterator(tmp, ec)) fs::remove(f.path(), ec);
    fs::remove(tmp, ec);
  }

  if (!ok) {
    std::printf("\nmpod demo: FAILED%s; see the output above\n",
                timed_out ? ": timed out, pods killed" : !started ? ": a pod failed while the others were starting" : "");
    return 1;
  }
  std::printf("\nmpod demo: PASS: %d clients (%s) received %llu packets = server tx, %llu dropped on full "
              "rings (tx + drops = %llu), 0 bad; every pod exited 0; nothing left behind%s\n",
              s.clients, namespaced ? "each PID 1 of its own pod" : "plain processes",
              static_cast<unsigned long long>(rx), static_cast<unsigned long long>(drops),
              static_cast<unsigned long long>(tx + drops), stopped ? "; stopped early by a signal" : "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  Settings s;
  std::vector<char*> rargs{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.starts_with("--clients=")) s.clients = std::atoi(a.c_str() + 10);
    else if (a.starts_with("--packets=")) s.packets = std::strtoull(a.c_str() + 10, nullptr, 10);
    else if (a == "--help" || a == "-h") {
      std::printf("usage: mpod-demo [--clients=N] [--packets=N] [runtime options]\n"
                  "  runs mpod-mp-server and N mpod-mp-client (default 4), each in a pod of its own, for\n"
                  "  --packets packets (default 500000), and checks their summaries add up.\n\n%s",
                  options_usage());
      return 0;
    } else rargs.push_back(argv[i]);
  }
  if (s.clients < 1 || s.clients > kMaxClients || s.packets == 0) {
    std::fprintf(stderr, "mpod-demo: --clients must be 1 to %d and --packets at least 1\n", kMaxClients);
    return 2;
  }
  try {
    int nargs = static_cast<int>(rargs.size());
    int first = parse_options(nargs, rargs.data(), s.runtime);
    if (first < nargs) {
      std::fprintf(stderr, "mpod-demo: unexpected argument '%s' (see --help)\n", rargs[first]);
      return 2;
    }
    if (s.runtime.proc_type != ProcType::primary) {
      std::fprintf(stderr, "mpod-demo: --proc-type is chosen per pod by the demo; leave it out\n");
      return 2;
    }
    for (int i = 1; i < nargs; ++i) {
      std::string a = rargs[i];
      if (!a.starts_with("--runtime-dir") && !a.starts_with("--file-prefix") && !a.starts_with("--wait-primary"))
        s.runtime_args.push_back(a);
      else if (a.find('=') == std::string::npos && i + 1 < nargs) ++i;  // "--runtime-dir DIR": skip its value too
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "mpod-demo: %s\n", e.what());
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  try {
    return run(s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpod-demo: error: %s\n", e.what());
    return 1;
  }
}
