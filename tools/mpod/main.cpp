// mpod: the command-line tool.
//   mpod serve [runtime options]                      standalone primary until SIGTERM/SIGINT
//   mpod info  [runtime options] [--json] [--watch[=SECONDS]]
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "json_writer.hpp"
#include "mpod/heap.hpp"
#include "mpod/mempool.hpp"
#include "mpod/ring.hpp"
#include "mpod/runtime.hpp"

namespace {

using namespace mpod;

void usage(FILE* f) {
  std::fprintf(f,
               "usage: mpod serve [runtime options]\n"
               "       mpod info  [runtime options] [--json] [--watch[=SECONDS]]\n"
               "       mpod ping  [runtime options] [--count N] [--interval SECONDS] [--to ID]\n\n"
               "serve  runs a standalone primary (the node-wide memory owner) until SIGTERM/SIGINT\n"
               "info   attaches as a secondary and prints processes, memory and memzones\n"
               "ping   sends channel requests to the primary (or --to ID) and prints each round trip\n\n%s",
               options_usage());
}

std::string iso_time(uint64_t ns) {
  time_t t = static_cast<time_t>(ns / 1000000000ull);
  struct tm tm;
  gmtime_r(&t, &tm);
  char b[40];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

// "primary process 1a2b3c4d (host pod-3, pid 1)" for the lines mpod prints.
std::string registry_name(const ProcessInfo& p) {
  return std::string(role_name(p.role)) + " process " + p.id.short_hex() + " (host " + p.hostname + ", pid " +
         std::to_string(p.pid) + ")";
}

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.1f GB", double(b) / (1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1f MB", double(b) / (1ull << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1f kB", double(b) / 1024);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

std::string json_report(Runtime& rt) {
  tools::JsonWriter j;
  j.begin_object();
  j.field("prefix", rt.options().file_prefix);
  j.field("domain_dir", rt.domain_dir());
  j.field("self", rt.self().id.hex());
  j.begin_array("processes");
  for (auto& p : rt.processes()) {
    j.begin_object();
    j.field("id", p.id.hex());
    j.field("role", role_name(p.role));
    j.field("pid", p.pid);
    j.field("pid_ns", p.pid_ns);
    j.field("uid", static_cast<uint64_t>(p.uid));
    j.field("hostname", p.hostname);
    j.field("alive", p.alive);
    j.field("started", iso_time(p.started_ns));
    j.field("started_ns", p.started_ns);
    j.begin_object("channel");
    j.field("socket", rt.domain_dir() + "/mp/" + p.id.hex() + ".sock");
    j.field("bound", std::filesystem::exists(rt.domain_dir() + "/mp/" + p.id.hex() + ".sock"));
    j.field("mailbox", rt.domain_dir() + "/mp/" + p.id.hex() + ".mbox");
    j.field("has_mailbox", std::filesystem::exists(rt.domain_dir() + "/mp/" + p.id.hex() + ".mbox"));
    j.end_object();
    j.end_object();
  }
  j.end_array();
  auto cs = rt.channel().stats();
  j.begin_object("channel");
  j.field("socket", cs.socket_path);
  j.field("peers", static_cast<uint64_t>(cs.peers));
  j.field("mailbox", cs.mailbox_path);
  j.field("sent", cs.sent);
  j.field("sent_by_mailbox", cs.sent_by_mailbox);
  j.field("received", cs.received);
  j.field("dropped", cs.dropped);
  j.field("requests", cs.requests);
  j.field("replies", cs.replies);
  j.field("failures", cs.failures);
  j.field("pending_requests", static_cast<uint64_t>(cs.pending_requests));
  j.end_object();
  j.begin_array("memory");
  for (auto& m : rt.memory()) {
    j.begin_object();
    j.field("page_size", m.page_size);
    j.field("hugepages", m.hugepages);
    j.field("total_bytes", m.total_bytes);
    j.field("used_bytes", m.used_bytes);
    j.field("backing", m.backing);
    j.end_object();
  }
  j.end_array();
  j.begin_array("rings");
  for (auto& r : Ring::list(rt)) {
    j.begin_object();
    j.field("name", r.name());
    j.field("capacity", static_cast<uint64_t>(r.capacity()));
    j.field("count", static_cast<uint64_t>(r.count()));
    j.field("elem_size", static_cast<uint64_t>(r.elem_size()));
    j.field("lost_to_dead", r.lost_to_dead());
    j.end_object();
  }
  j.end_array();
  j.begin_array("mempools");
  for (auto& m : Mempool::list(rt)) {
    j.begin_object();
    j.field("name", m.name());
    j.field("elt_size", static_cast<uint64_t>(m.elt_size()));
    j.field("size", static_cast<uint64_t>(m.size()));
    const uint32_t available = m.available();
    j.field("available", static_cast<uint64_t>(available));
    j.field("in_use", static_cast<uint64_t>(m.size() - available));
    j.field("cache_size", static_cast<uint64_t>(m.cache_size()));
    j.field("lost_to_dead", m.lost_to_dead());
    j.end_object();
  }
  j.end_array();
  j.begin_array("heaps");
  for (auto& h : Heap::list(rt)) {
    const HeapStats s = h.stats();
    j.begin_object();
    j.field("name", h.name());
    j.field("heap_bytes", s.heap_bytes);
    j.field("free_bytes", s.free_bytes);
    j.field("allocated_bytes", s.allocated_bytes);
    j.field("greatest_free", s.greatest_free);
    j.field("allocated_blocks", static_cast<uint64_t>(s.allocated_blocks));
    j.field("free_blocks", static_cast<uint64_t>(s.free_blocks));
    j.field("regions", static_cast<uint64_t>(s.regions));
    j.end_object();
  }
  j.end_array();
  j.begin_array("memzones");
  for (auto& z : rt.memzones().list()) {
    j.begin_object();
    j.field("name", z.name);
    j.field("size", z.len);
    j.field("addr", static_cast<uint64_t>(reinterpret_cast<uintptr_t>(z.addr)));
    j.field("page_size", z.page_size);
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return j.str() + "\n";
}

std::string text_report(Runtime& rt) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "domain %s (prefix %s), shared range %p + %s\n\n",
                rt.domain_dir().c_str(), rt.options().file_prefix.c_str(), rt.base_addr(),
                human_bytes(rt.va_len()).c_str());
  out += line;
  auto procs = rt.processes();
  std::snprintf(line, sizeof line, "PROCESSES (%zu)\n%-32s  %-9s  %7s  %-11s  %-20s  %-20s  %-9s  %s\n",
                procs.size(), "ID", "ROLE", "PID", "PID-NS", "HOST", "STARTED", "CHANNEL", "ALIVE");
  out += line;
  for (auto& p : procs) {
    const bool bound = std::filesystem::exists(rt.domain_dir() + "/mp/" + p.id.hex() + ".sock");
    const bool mbox = std::filesystem::exists(rt.domain_dir() + "/mp/" + p.id.hex() + ".mbox");
    std::snprintf(line, sizeof line, "%-32s  %-9s  %7d  %-11llu  %-20s  %-20s  %-9s  %s%s\n",
                  p.id.hex().c_str(), role_name(p.role), p.pid,
                  static_cast<unsigned long long>(p.pid_ns), p.hostname.c_str(),
                  iso_time(p.started_ns).c_str(), bound ? (mbox ? "sock+mbox" : "sock") : "none", p.alive ? "yes" : "NO (dead)",
                  p.id == rt.self().id ? " (this mpod info)" : "");
    out += line;
  }
  auto cs = rt.channel().stats();
  std::snprintf(line, sizeof line,
                "\nCHANNEL (this process)\nsocket %s, mailbox %s; %zu live peers; sent %llu (%llu by mailbox), "
                "received %llu, dropped %llu; requests %llu, replies %llu, failures %llu, pending %zu\n",
                cs.socket_path.c_str(), cs.mailbox_path.c_str(), cs.peers, static_cast<unsigned long long>(cs.sent),
                static_cast<unsigned long long>(cs.sent_by_mailbox),
                static_cast<unsigned long long>(cs.received), static_cast<unsigned long long>(cs.dropped),
                static_cast<unsigned long long>(cs.requests), static_cast<unsigned long long>(cs.replies),
                static_cast<unsigned long long>(cs.failures), cs.pending_requests);
  out += line;
  std::snprintf(line, sizeof line, "\nMEMORY\n%-10s  %-5s  %10s  %10s  %s\n", "PAGE-SIZE", "HUGE",
                "TOTAL", "USED", "BACKING");
  out += line;
  for (auto& m : rt.memory()) {
    std::snprintf(line, sizeof line, "%-10s  %-5s  %10s  %10s  %s\n", human_bytes(m.page_size).c_str(),
                  m.hugepages ? "yes" : "no", human_bytes(m.total_bytes).c_str(),
                  human_bytes(m.used_bytes).c_str(), m.backing.c_str());
    out += line;
  }
  auto rings = Ring::list(rt);
  // LOST: elements dead producers claimed and never published (Ring::lost_to_dead).
  std::snprintf(line, sizeof line, "\nRINGS (%zu)\n%-28s  %10s  %10s  %9s  %10s\n", rings.size(), "NAME", "CAPACITY",
                "COUNT", "ELEM-SIZE", "LOST");
  out += line;
  for (auto& r : rings) {
    std::snprintf(line, sizeof line, "%-28s  %10u  %10u  %9u  %10llu\n", r.name().c_str(), r.capacity(), r.count(),
                  r.elem_size(), static_cast<unsigned long long>(r.lost_to_dead()));
    out += line;
  }
  auto pools = Mempool::list(rt);
  std::snprintf(line, sizeof line, "\nMEMPOOLS (%zu)\n%-25s  %8s  %10s  %10s  %10s  %6s  %10s\n", pools.size(), "NAME",
                "OBJ-SIZE", "SIZE", "AVAILABLE", "IN-USE", "CACHE", "LOST");
  out += line;
  for (auto& m : pools) {
    const uint32_t available = m.available();
    std::snprintf(line, sizeof line, "%-25s  %8u  %10u  %10u  %10u  %6u  %10llu\n", m.name().c_str(), m.elt_size(),
                  m.size(), available, m.size() - available, m.cache_size(),
                  static_cast<unsigned long long>(m.lost_to_dead()));
    out += line;
  }
  auto heaps = Heap::list(rt);
  std::snprintf(line, sizeof line, "\nHEAPS (%zu)\n%-24s  %10s  %10s  %10s  %12s  %7s\n", heaps.size(), "NAME", "SIZE",
                "FREE", "ALLOCATED", "LARGEST-FREE", "REGIONS");
  out += line;
  for (auto& h : heaps) {
    const HeapStats s = h.stats();
    std::snprintf(line, sizeof line, "%-24s  %10s  %10s  %10s  %12s  %7u\n", h.name().c_str(),
                  human_bytes(s.heap_bytes).c_str(), human_bytes(s.free_bytes).c_str(),
                  human_bytes(s.allocated_bytes).c_str(), human_bytes(s.greatest_free).c_str(), s.regions);
    out += line;
  }
  auto zones = rt.memzones().list();
  std::snprintf(line, sizeof line, "\nMEMZONES (%zu)\n%-32s  %-16s  %10s  %s\n", zones.size(), "NAME",
                "ADDRESS", "SIZE", "PAGE-SIZE");
  out += line;
  for (auto& z : zones) {
    std::snprintf(line, sizeof line, "%-32s  %-16p  %10s  %s\n", z.name.c_str(), z.addr,
                  human_bytes(z.len).c_str(), human_bytes(z.page_size).c_str());
    out += line;
  }
  return out;
}

// Blocks SIGINT/SIGTERM so they can be waited for; returns the signal, or 0 after `seconds`.
int wait_signal(double seconds) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  timespec ts{static_cast<time_t>(seconds), static_cast<long>(std::fmod(seconds, 1.0) * 1e9)};
  int sig = sigtimedwait(&set, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, nullptr);
}

int cmd_serve(int argc, char** argv) {
  Options o;
  int first = parse_options(argc, argv, o);
  if (first < argc) {
    std::fprintf(stderr, "mpod serve: unexpected argument '%s'\n", argv[first]);
    return 2;
  }
  if (o.proc_type == ProcType::secondary) {
    std::fprintf(stderr, "mpod serve: runs a primary; --proc-type=secondary makes no sense here\n");
    return 2;
  }
  o.proc_type = ProcType::primary;
  block_stop_signals();  // before any thread exists, so the signals come to sigtimedwait
  auto rt = Runtime::start(o);
  std::printf("mpod serve: primary %s ready for prefix '%s' in %s\n", rt->self().id.hex().c_str(),
              o.file_prefix.c_str(), rt->domain_dir().c_str());
  std::fflush(stdout);
  // Nothing to do until a signal: the primary watches the domain from its
  // channel's watch thread, which reaps a crashed process the moment it dies.
  int sig = 0;
  while (!(sig = wait_signal(3600.0))) {
  }
  std::printf("mpod serve: %s received, shutting down\n", strsignal(sig));
  return 0;
}

int cmd_info(int argc, char** argv) {
  // Take out info's own options; the rest are runtime options.
  bool json = false;
  double watch = 0;
  std::vector<char*> args{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json") json = true;
    else if (a == "--watch") watch = 1.0;
    else if (a.starts_with("--watch=")) {
      char* end = nullptr;
      watch = std::strtod(a.c_str() + 8, &end);
      if (*end || !(watch > 0)) {
        std::fprintf(stderr, "mpod info: --watch needs a number of seconds > 0, got '%s'\n", a.c_str() + 8);
        return 2;
      }
    } else args.push_back(argv[i]);
  }
  Options o;
  int n = static_cast<int>(args.size());
  int first = parse_options(n, args.data(), o);
  if (first < n) {
    std::fprintf(stderr, "mpod info: unexpected argument '%s'\n", args[first]);
    return 2;
  }
  if (o.proc_type == ProcType::primary) o.proc_type = ProcType::secondary;
  if (o.proc_type != ProcType::secondary) {
    std::fprintf(stderr, "mpod info: attaches as a secondary; --proc-type=%s makes no sense here\n", "auto");
    return 2;
  }
  block_stop_signals();
  auto rt = Runtime::start(o);
  for (;;) {
    std::string report = json ? json_report(*rt) : text_report(*rt);
    if (watch > 0 && !json) std::fputs("\033[H\033[2J", stdout);  // clear screen between refreshes
    std::fputs(report.c_str(), stdout);
    std::fflush(stdout);
    if (watch <= 0 || wait_signal(watch)) break;
  }
  return 0;
}

int cmd_ping(int argc, char** argv) {
  long count = 0;  // 0: until interrupted
  double interval = 1.0;
  std::string to_hex;
  std::vector<char*> args{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> std::string {
      std::string n = name;
      if (a.starts_with(n + "=")) return a.substr(n.size() + 1);
      if (i + 1 >= argc) throw Error(Errc::invalid_argument, "mpod ping: " + n + " needs a value");
      return argv[++i];
    };
    if (a == "--count" || a.starts_with("--count=") || a == "-c") count = std::stol(value(a == "-c" ? "-c" : "--count"));
    else if (a == "--interval" || a.starts_with("--interval=") || a == "-i") interval = std::stod(value(a == "-i" ? "-i" : "--interval"));
    else if (a == "--to" || a.starts_with("--to=")) to_hex = value("--to");
    else args.push_back(argv[i]);
  }
  if (count < 0 || !(interval >= 0)) throw Error(Errc::invalid_argument, "mpod ping: --count and --interval must be >= 0");
  Options o;
  int n = static_cast<int>(args.size());
  if (int first = parse_options(n, args.data(), o); first < n) {
    std::fprintf(stderr, "mpod ping: unexpected argument '%s'\n", args[first]);
    return 2;
  }
  o.proc_type = ProcType::secondary;
  block_stop_signals();
  auto rt = Runtime::start(o);
  std::optional<ProcessInfo> target;
  for (auto& p : rt->processes())
    if (p.alive && (to_hex.empty() ? p.role == Role::primary : p.id.hex().starts_with(to_hex))) target = p;
  if (!target) {
    std::fprintf(stderr, "mpod ping: error: no live %s in %s\n",
                 to_hex.empty() ? "primary" : ("process with id " + to_hex).c_str(), rt->domain_dir().c_str());
    return 1;
  }
  std::printf("PING %s process %s (host %s, pid %d) over the channel of %s\n", role_name(target->role),
              target->id.short_hex().c_str(), target->hostname.c_str(), target->pid, rt->domain_dir().c_str());
  std::vector<double> rtts;
  long sent = 0, failed = 0;
  for (long seq = 1; count == 0 || seq <= count; ++seq) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = rt->channel().request(target->id, "mpod.ping", {}, std::chrono::milliseconds(1000));
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ++sent;
    if (!r.replies.empty()) {
      rtts.push_back(ms);
      std::printf("reply from %s: seq=%ld time=%.3f ms\n", target->id.short_hex().c_str(), seq, ms);
    } else {
      ++failed;
      const auto& f = r.failures.front();
      std::printf("no reply from %s: seq=%ld %s (%s)\n", target->id.short_hex().c_str(), seq, peer_error_name(f.error),
                  f.detail.c_str());
      if (f.error == PeerError::dead) {
        // Nothing will answer again: say so and stop, rather than ping a corpse until --count.
        std::fflush(stdout);
        std::fprintf(stderr, "mpod ping: %s is dead; start it again (or ping another process with --to)\n",
                     registry_name(*target).c_str());
        break;
      }
    }
    std::fflush(stdout);
    if ((count == 0 || seq < count) && wait_signal(interval)) break;
  }
  std::printf("--- %s ping statistics ---\n%ld requests, %zu replies, %ld failed", target->id.short_hex().c_str(), sent,
              rtts.size(), failed);
  if (!rtts.empty()) {
    std::sort(rtts.begin(), rtts.end());
    auto q = [&](double f) { return rtts[std::min(rtts.size() - 1, static_cast<size_t>(f * (rtts.size() - 1) + 0.5))]; };
    std::printf("; rtt min/p50/p99/max = %.3f/%.3f/%.3f/%.3f ms", rtts.front(), q(0.5), q(0.99), rtts.back());
  }
  std::printf("\n");
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  try {
    if (cmd == "serve") return cmd_serve(argc - 1, argv + 1);
    if (cmd == "info") return cmd_info(argc - 1, argv + 1);
    if (cmd == "ping") return cmd_ping(argc - 1, argv + 1);
  } catch (const mpod::Error& e) {
    std::fprintf(stderr, "mpod %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "mpod: unknown command '%s' (try mpod --help)\n", cmd.c_str());
  return 2;
}
