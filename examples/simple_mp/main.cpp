// mpod-simple-mp: DPDK's simple_mp example (examples/multi_process/simple_mp) on mpod.
//
//   mpod-simple-mp [runtime options] [-- --help]
//
// The primary creates two rings, PRI_2_SEC and SEC_2_PRI, and MSG_POOL, a
// mempool of 1024 message buffers; a secondary (--proc-type=secondary) looks
// them up. Each side sends on one ring and receives on the other (the
// secondary's directions are swapped), so messages typed in one process are
// printed by the other, whichever pod each lives in.
//
// Commands come from stdin, typed at a "simple_mp > " prompt on a terminal or
// piped in (then without the prompt); see command.hpp. A receiver thread
// prints "received: <text>" for each message and puts its buffer back. With
// piped commands, a failed command makes the exit code 1 and a failed wait
// also stops reading, so a script can check that messages crossed.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "../common/app_args.hpp"
#include "../common/backoff.hpp"
#include "../common/lookup.hpp"
#include "../common/stop_signals.hpp"
#include "command.hpp"
#include "line_reader.hpp"
#include "mpod/mempool.hpp"
#include "mpod/ring.hpp"
#include "mpod/runtime.hpp"

namespace {

using namespace mpod;
using examples::StopSignals;

// Names and sizes of DPDK's simple_mp.
constexpr const char* kPriToSec = "PRI_2_SEC";
constexpr const char* kSecToPri = "SEC_2_PRI";
constexpr const char* kPoolName = "MSG_POOL";
constexpr uint32_t kRingSize = 64;
constexpr uint32_t kPoolSize = 1024;
constexpr uint32_t kPoolCache = 32;
constexpr uint32_t kMsgSize = 128;  // STR_TOKEN_SIZE: text and its terminator

const char* usage() {
  return "usage: mpod-simple-mp [runtime options] [-- --help]\n"
         "  Start one with the default --proc-type=primary, then others with --proc-type=secondary\n"
         "  (same --file-prefix and --runtime-dir); type commands, or pipe them in.\n\n";
}

struct Endpoints {
  Ring send, recv;
  Mempool pool;
};

Endpoints make_or_find(Runtime& rt) {
  if (rt.role() == Role::primary) {
    Ring pri_to_sec = Ring::create(rt, kPriToSec, kRingSize);
    Ring sec_to_pri = Ring::create(rt, kSecToPri, kRingSize);
    Mempool pool = Mempool::create(rt, kPoolName, kPoolSize, kMsgSize, MempoolOptions{kPoolCache, {}});
    return {pri_to_sec, sec_to_pri, pool};
  }
  // The primary creates these right after it starts; give it a moment.
  const double wait = std::max(rt.options().wait_primary_s, 5.0);
  const std::string hint = "start mpod-simple-mp as primary first, with the same --file-prefix and --runtime-dir";
  Mempool pool = examples::lookup_when_created([&] { return Mempool::lookup(rt, kPoolName); }, wait, hint);
  Ring pri_to_sec = examples::lookup_when_created([&] { return Ring::lookup(rt, kPriToSec); }, wait, hint);
  Ring sec_to_pri = examples::lookup_when_created([&] { return Ring::lookup(rt, kSecToPri); }, wait, hint);
  return {sec_to_pri, pri_to_sec, pool};
}

// DPDK's lcore_recv: takes messages off the receive ring, prints them and
// gives their buffers back to the pool.
class Receiver {
 public:
  explicit Receiver(Endpoints& e) : e_(e), thread_([this] { run(); }) {}
  ~Receiver() { stop(); }
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  uint64_t received() const { return received_.load(); }

 private:
  void run() {
    examples::Backoff backoff;
    while (!stop_.load(std::memory_order_relaxed)) {
      void* msg = nullptr;
      if (!e_.recv.dequeue(&msg)) {
        backoff.idle();
        continue;
      }
      backoff.reset();
      const char* text = static_cast<const char*>(msg);
      std::printf("received: %.*s\n", int(strnlen(text, kMsgSize)), text);
      std::fflush(stdout);
      e_.pool.put(msg);
      received_.fetch_add(1);
    }
  }

  Endpoints& e_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0};
  std::thread thread_;
};

bool send(Endpoints& e, const std::string& text) {
  void* buf = nullptr;
  if (!e.pool.get(&buf)) {
    std::fprintf(stderr, "send: no free buffer in %s (all %u are queued or being printed); "
                 "let the other side receive, then send again\n", kPoolName, kPoolSize);
    return false;
  }
  const size_t len = std::min(text.size(), size_t(kMsgSize - 1));
  if (len < text.size()) std::fprintf(stderr, "send: message cut to %u bytes\n", kMsgSize - 1);
  std::memcpy(buf, text.data(), len);
  static_cast<char*>(buf)[len] = '\0';
  if (!e.send.enqueue(buf)) {
    e.pool.put(buf);
    std::fprintf(stderr, "send: ring %s is full (%u messages nobody took); is the other side running? "
                 "send again once it receives\n", e.send.name().c_str(), kRingSize);
    return false;
  }
  return true;
}

bool wait_received(const Receiver& r, const simple_mp::Command& c) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(c.seconds);
  while (r.received() < c.count) {
    if (StopSignals::requested()) return false;
    if (std::chrono::steady_clock::now() >= deadline) {
      std::fprintf(stderr, "wait: %llu of %llu messages received after %g s; is the other side running and "
                   "sending (same --file-prefix and --runtime-dir)?\n",
                   static_cast<unsigned long long>(r.received()), static_cast<unsigned long long>(c.count), c.seconds);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::printf("waited: %llu received\n", static_cast<unsigned long long>(r.received()));
  std::fflush(stdout);
  return true;
}

// The prompt loop. Returns the exit code.
int run_commands(Endpoints& e, Receiver& receiver) {
  const bool interactive = isatty(STDIN_FILENO);
  simple_mp::LineReader in(STDIN_FILENO);
  int rc = 0;
  for (;;) {
    if (interactive) {
      std::printf("simple_mp > ");
      std::fflush(stdout);
    }
    std::string line;
    auto status = in.next(&line, [] { return StopSignals::requested(); });
    if (status != simple_mp::LineReader::Status::line) break;
    auto c = simple_mp::parse_command(line);
    bool ok = true;
    switch (c.kind) {
      case simple_mp::Command::empty: break;
      case simple_mp::Command::help: std::printf("%s", simple_mp::help_text()); break;
      case simple_mp::Command::invalid:
        std::fprintf(stderr, "%s\n", c.text.c_str());
        ok = false;
        break;
      case simple_mp::Command::send: ok = send(e, c.text); break;
      case simple_mp::Command::wait:
        if (!wait_received(receiver, c)) {
          if (!interactive) return 1;
          ok = false;
        }
        break;
      case simple_mp::Command::quit: return rc;
    }
    if (!ok && !interactive) rc = 1;
  }
  if (interactive) std::printf("\n");
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (examples::wants_help(argc, argv)) {
    std::printf("%s%s\n%s", usage(), options_usage(), simple_mp::help_text());
    return 0;
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  StopSignals::install();
  try {
    int first = 0;
    auto rt = Runtime::start(argc, argv, &first);
    examples::AppArgs args(argc, argv, first);
    if (!args.done()) args.unknown();
    Endpoints e = make_or_find(*rt);
    StopSignals::arm();
    std::printf("simple_mp: %s ready (pid %d, host %s): sending on %s, receiving on %s; type help for commands\n",
                role_name(rt->role()), rt->self().pid, rt->self().hostname.c_str(), e.send.name().c_str(),
                e.recv.name().c_str());
    int rc = 0;
    {
      Receiver receiver(e);
      rc = run_commands(e, receiver);
      receiver.stop();
    }
    std::printf("simple_mp: %s done, %s\n", role_name(rt->role()),
                StopSignals::requested() ? "stopped by a signal" : "bye");
    return rc;
  } catch (const examples::UsageError& u) {
    std::fprintf(stderr, "mpod-simple-mp: %s\n%s", u.what(), usage());
    return 2;
  } catch (const Error& err) {
    std::fprintf(stderr, "mpod-simple-mp: error: %s\n", err.what());
    return 1;
  }
}
