// mpod-test-proc: the process the integration tests start, often as PID 1 of
// its own simulated pod.
//
//   mpod-test-proc [--hostname=NAME] MODE [runtime options] [-- MODE ARGS]
//
// MODE
//   primary   [--greeting=TEXT]    primary; memzones "greeting" (TEXT) and "barrier"; waits for SIGTERM
//   pod       --pods=N --index=K [--greeting=TEXT] [--expect-pid1]
//             secondary: checks the greeting, reserves and fills memzone pod_K, waits until all N
//             pods are attached at once, then checks every pod_J; prints POD-OK
//   attach    [--hold] [--reserve=NAME:BYTES]   starts with the given options; prints ATTACHED
//   responder serves the channel actions below until SIGTERM; prints RESPONDER id=...
//   requester --to=all|ID --action=NAME [--data=TEXT] [--timeout=MS] [--threads=T --count=N] [--fd-text=TEXT]
//             makes requests and prints each REPLY / FAIL; with --threads, checks every reply
//             matches its request and prints MATCHED n
//   member    [--events] [--spawn=K] [--ask-primary] [--timeout=MS]
//             secondary that stays attached: with --spawn, first starts K more members like
//             itself (same arguments, without --spawn; the pod's PID 1 launching the rest of
//             its pod) and at the end waits for them (exit 2 if one failed); with --events,
//             prints every peer event as "EVENT <event> <id> t=<CLOCK_MONOTONIC ns>"; with
//             --ask-primary, sends one mpod.ping request to the primary (fails with exit 2 if
//             it gets no reply within --timeout); then prints
//             "MEMBER id=<id> pid=<pid> host=<host> t=<ns>". On SIGUSR1 it pings the primary
//             and prints "PING-PRIMARY ok ms=<ms>" or "PING-PRIMARY failed error=<e> detail=<d>".
//             Leaves cleanly on SIGTERM/SIGINT or on the channel action "quit" (which it
//             answers "quitting"; the way to stop a member that is PID 1 of a pod, where
//             unshare does not pass signals on).
// Channel actions of primary and responder: echo (replies "echo:<data>|<host>|<pid>"),
// boom (throws), slow (never replies), fd-read (replies with the text read from the fd it got),
// note (prints "NOTE from=<sender id> data=<data>"; a request is answered "noted").
// The primary also prints every peer event as "EVENT <event> <id> t=<CLOCK_MONOTONIC ns>".
//
// Hostile senders (run before any runtime option is parsed; they attach to nothing):
//   raw-send SOCKET                        an "echo" request from a random id
//   raw-send-as SOCKET HEX_ID ACTION [TEXT]  a one-way message claiming to come from HEX_ID
//   body-flood SOCKET COUNT NFDS           COUNT request datagrams, each a marker body
//             (lane_token 1..COUNT) that no marker will ever claim, each carrying NFDS
//             descriptors of /dev/null; prints FLOODED sent=N
//
// Exit codes: 0 success, 1 mpod::Error (printed as "ERROR <code>: <message>"), 2 check failed.
#include <signal.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mpod/ring.hpp"
#include "mpod/runtime.hpp"
#include "src/ipc/channel_impl.hpp"
#include "src/ipc/mailbox.hpp"
#include "src/ipc/wire.hpp"
#include "src/runtime/claim_owners.hpp"
#include "src/runtime/registry.hpp"
#include "src/os/os.hpp"
#include "tests/helpers/proc_common.hpp"

namespace {

using namespace mpod;

struct Args {
  std::string greeting = "hello from the primary";
  int pods = 0, index = -1;
  bool expect_pid1 = false, hold = false;
  std::string reserve;
  std::string to, action = "echo", data, fd_text;
  int timeout_ms = 2000, threads = 0, count = 1;
  int sequence = 0;        // requester: send this many "seq" messages of mixed sizes, then check them
  int stall_ms = 0;        // requester: stall the peer this long, then send to it until it is full
  bool drop_mailbox = false;  // requester: remove the peer's mailbox first, so only its socket serves
  // Rings across processes: the primary creates ring `ring` (capacity, modes)
  // for `total` items; producers `index` send `count` each; consumers take
  // until `total` have been taken by all of them together.
  std::string make_ring, ring;
  std::string side;  // ring-claim-and-hang: enqueue or dequeue
  uint64_t total = 0;
  bool burst = false;
  // member
  bool events = false, ask_primary = false;
  int spawn = 0;
};

// What ring stress processes pass: a record that checks itself.
struct RingItem {
  uint32_t producer, seq;
  uint64_t check;
};
uint64_t ring_check(uint32_t p, uint32_t s) { return (uint64_t(p) * 0x9E3779B97F4A7C15ull) ^ (uint64_t(s) * 0xC2B2AE3D27D4EB4Full) ^ 0x5bd1e995; }
// Shared by all consumers: how many were taken; a counter per item follows it.
struct RingTally {
  std::atomic<uint64_t> taken;
};

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

void install_actions(Runtime& rt) {
  auto& ch = rt.channel();
  const std::string tail = "|" + rt.self().hostname + "|" + std::to_string(rt.self().pid);
  ch.register_action("echo", [tail](Incoming& in) { in.reply("echo:" + std::string(in.message().text()) + tail); });
  ch.register_action("boom", [](Incoming&) -> void { throw std::runtime_error("boom handler exploded"); });
  ch.register_action("slow", [](Incoming&) {});
  // Holds the receive thread for the payload's milliseconds: a peer that stopped reading.
  ch.register_action("stall", [](Incoming& in) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::stoi(std::string(in.message().text()))));
  });
  // One-way messages "<sender>:<n>" must arrive with n = 0, 1, 2... per sender,
  // whatever path each took; every 7th carries a memfd holding the same text.
  static std::map<std::string, int> next_seq;
  static int out_of_order = 0, bad_fd = 0;
  ch.register_action("seq", [](Incoming& in) {
    std::string t(in.message().text().substr(0, in.message().text().find('|')));
    auto colon = t.find(':');
    int n = std::stoi(t.substr(colon + 1));
    int& expect = next_seq[t.substr(0, colon)];
    if (n != expect) ++out_of_order;
    expect = n + 1;
    if (n % 7 == 0) {
      char buf[64] = {};
      if (in.message().fds.size() != 1 || pread(in.message().fds[0], buf, sizeof buf - 1, 0) <= 0 || t != buf) ++bad_fd;
    }
  });
  ch.register_action("seq-check", [](Incoming& in) {
    std::string who(in.message().text());
    in.reply("received=" + std::to_string(next_seq[who]) + " out_of_order=" + std::to_string(out_of_order) +
             " bad_fd=" + std::to_string(bad_fd));
  });
  // Shows who a message came from: the tests check which senders get through.
  ch.register_action("note", [](Incoming& in) {
    std::printf("NOTE from=%s data=%s\n", in.message().from.hex().c_str(), std::string(in.message().text()).c_str());
    std::fflush(stdout);
    if (in.is_request()) in.reply("noted");
  });
  ch.register_action("fd-read", [](Incoming& in) {
    auto& m = in.message();
    if (m.fds.size() != 1) throw std::runtime_error("expected one descriptor, got " + std::to_string(m.fds.size()));
    char buf[256] = {};
    ssize_t n = pread(m.fds[0], buf, sizeof buf - 1, 0);
    in.reply(std::string(buf, n > 0 ? size_t(n) : 0));
  });
}

[[noreturn]] void fail(const std::string& what) {
  std::printf("CHECK-FAILED %s\n", what.c_str());
  std::fflush(stdout);
  std::exit(2);
}

using test::wait_for_stop;

struct Barrier {
  std::atomic<uint32_t> attached;
};

void write_text(void* dst, uint64_t cap, const std::string& s) {
  if (s.size() + 1 > cap) fail("text too long for memzone");
  std::memcpy(dst, s.c_str(), s.size() + 1);
}

int run_primary(Runtime& rt, const Args& a) {
  if (!a.make_ring.empty()) {  // name,capacity,sp|mp,sc|mc
    std::vector<std::string> f = test::split_commas(a.make_ring);
    if (f.size() != 4) fail("--make-ring=name,capacity,sp|mp,sc|mc");
    RingOptions o{sizeof(RingItem), f[2] == "sp" ? Sync::single : Sync::multi, f[3] == "sc" ? Sync::single : Sync::multi};
    Ring::create(rt, f[0], uint32_t(std::stoul(f[1])), o);
    rt.memzones().reserve("tally_" + f[0], sizeof(RingTally) + a.total);
  }
  auto g = rt.memzones().reserve("greeting", 4096);
  write_text(g.addr, g.len, a.greeting);
  rt.memzones().reserve("barrier", sizeof(Barrier));
  install_actions(rt);
  rt.channel().subscribe([](const ProcessInfo& p, PeerEvent e) {
    std::printf("EVENT %s %s t=%llu\n", peer_event_name(e), p.id.hex().c_str(),
                static_cast<unsigned long long>(monotonic_ns()));
    std::fflush(stdout);
  });
  std::printf("READY id=%s pid=%d\n", rt.self().id.hex().c_str(), rt.self().pid);
  std::fflush(stdout);
  wait_for_stop();
  std::printf("EXIT\n");
  return 0;
}

std::string pod_text(int index, const ProcessInfo& self) {
  return "pod " + std::to_string(index) + " id=" + self.id.hex() + " host=" + self.hostname +
         " pid=" + std::to_string(self.pid);
}

int run_pod(Runtime& rt, const Args& a) {
  const auto& self = rt.self();
  if (a.expect_pid1 && self.pid != 1) fail("expected to be PID 1 in my pod, am " + std::to_string(self.pid));
  auto g = rt.memzones().lookup("greeting");
  if (!g) fail("memzone greeting not found");
  if (a.greeting != static_cast<const char*>(g->addr))
    fail(std::string("greeting reads '") + static_cast<const char*>(g->addr) + "'");
  auto mine = rt.memzones().reserve("pod_" + std::to_string(a.index), 4096);
  write_text(mine.addr, mine.len, pod_text(a.index, self));
  auto b = rt.memzones().lookup("barrier");
  if (!b) fail("memzone barrier not found");
  auto* barrier = static_cast<Barrier*>(b->addr);
  barrier->attached.fetch_add(1);
  // Everybody attached at the same time: wait for all N, then look at them all.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (barrier->attached.load() < static_cast<uint32_t>(a.pods)) {
    if (std::chrono::steady_clock::now() > deadline)
      fail("only " + std::to_string(barrier->attached.load()) + " of " + std::to_string(a.pods) + " pods attached");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  int alive_secondaries = 0;
  for (auto& p : rt.processes()) alive_secondaries += p.alive && p.role == Role::secondary;
  if (alive_secondaries < a.pods)
    fail("only " + std::to_string(alive_secondaries) + " live secondaries while all " + std::to_string(a.pods) +
         " should be attached");
  for (int j = 0; j < a.pods; ++j) {
    auto z = rt.memzones().lookup("pod_" + std::to_string(j));
    if (!z) fail("memzone pod_" + std::to_string(j) + " missing");
    std::string text = static_cast<const char*>(z->addr);
    if (!text.starts_with("pod " + std::to_string(j) + " id=")) fail("memzone pod_" + std::to_string(j) + " reads '" + text + "'");
  }
  // Stay until every pod has checked, so the "all at once" claim holds for all.
  barrier->attached.fetch_add(1);
  while (barrier->attached.load() < 2u * static_cast<uint32_t>(a.pods)) {
    if (std::chrono::steady_clock::now() > deadline) fail("pods did not all finish checking");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::printf("POD-OK index=%d pid=%d host=%s id=%s alive_secondaries=%d\n", a.index, self.pid,
              self.hostname.c_str(), self.id.hex().c_str(), alive_secondaries);
  return 0;
}

int run_attach(Runtime& rt, const Args& a) {
  std::printf("ATTACHED role=%s id=%s pid=%d\n", role_name(rt.role()), rt.self().id.hex().c_str(), rt.self().pid);
  if (!a.reserve.empty()) {
    auto colon = a.reserve.find(':');
    auto z = rt.memzones().reserve(a.reserve.substr(0, colon), std::stoull(a.reserve.substr(colon + 1)));
    std::printf("RESERVED %s at %p\n", z.name.c_str(), z.addr);
  }
  std::fflush(stdout);
  if (a.hold) wait_for_stop();
  return 0;
}

int run_ring_producer(Runtime& rt, const Args& a) {
  Ring r = Ring::lookup(rt, a.ring);
  RingItem buf[32];
  uint32_t seq = 0;
  uint64_t full = 0;
  while (seq < uint32_t(a.count)) {
    unsigned n = std::min<unsigned>(1 + seq % 32, uint32_t(a.count) - seq);
    for (unsigned i = 0; i < n; ++i) buf[i] = {uint32_t(a.index), seq + i, ring_check(uint32_t(a.index), seq + i)};
    unsigned done = a.burst ? r.enqueue_burst_elem(buf, n) : r.enqueue_bulk_elem(buf, n);
    seq += done;
    if (done < n) {
      ++full;
      std::this_thread::yield();
    }
  }
  std::printf("PRODUCER index=%d sent=%u full=%llu\n", a.index, seq, static_cast<unsigned long long>(full));
  return 0;
}

int run_ring_consumer(Runtime& rt, const Args& a) {
  Ring r = Ring::lookup(rt, a.ring);
  auto z = rt.memzones().lookup("tally_" + a.ring);
  if (!z) fail("tally memzone missing");
  auto* tally = static_cast<RingTally*>(z->addr);
  auto* seen = reinterpret_cast<std::atomic<uint8_t>*>(static_cast<char*>(z->addr) + sizeof(RingTally));
  std::map<uint32_t, int64_t> last;
  uint64_t got = 0, dup = 0, bad = 0, disorder = 0;
  RingItem buf[32];
  unsigned want = 1;
  const uint64_t per_producer = uint64_t(a.count);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (tally->taken.load() < a.total) {
    if (std::chrono::steady_clock::now() > deadline) fail("consumers took only " + std::to_string(tally->taken.load()));
    unsigned n = a.burst ? r.dequeue_burst_elem(buf, want) : r.dequeue_bulk_elem(buf, want);
    want = want % 32 + 1;
    if (n == 0) {
      std::this_thread::yield();
      continue;
    }
    for (unsigned i = 0; i < n; ++i) {
      const RingItem& it = buf[i];
      const uint64_t slot = uint64_t(it.producer) * per_producer + it.seq;
      if (it.check != ring_check(it.producer, it.seq) || slot >= a.total) {
        ++bad;
        continue;
      }
      if (seen[slot].fetch_add(1) != 0) ++dup;
      auto [pos, fresh] = last.emplace(it.producer, -1);
      if (int64_t(it.seq) <= pos->second) ++disorder;
      pos->second = it.seq;
    }
    got += n;
    tally->taken.fetch_add(n);
  }
  std::printf("CONSUMER got=%llu dup=%llu bad=%llu disorder=%llu pid=%d\n", static_cast<unsigned long long>(got),
              static_cast<unsigned long long>(dup), static_cast<unsigned long long>(bad),
              static_cast<unsigned long long>(disorder), rt.self().pid);
  return 0;
}

// Dies inside a ring call, as a SIGKILL at the worst moment leaves it: makes
// a multi claim of --count slots by hand (the CAS a call makes, with this
// process's tag), and never publishes it. --side=enqueue: the slots hold
// garbage (a copy cut short). --side=dequeue: first enqueues --count items
// of its own, as producer --index, then claims them back. Prints CLAIMED and
// waits to be killed.
int run_ring_claim_and_hang(Runtime& rt, const Args& a) {
  Ring r = Ring::lookup(rt, a.ring);
  auto z = rt.memzones().lookup("RG_" + a.ring);
  if (!z) fail("ring memzone RG_" + a.ring + " missing");
  auto* h = static_cast<detail::RingHeader*>(z->addr);
  const unsigned k = unsigned(a.count);
  if (a.side == "dequeue") {
    std::vector<RingItem> items(k);
    for (unsigned i = 0; i < k; ++i) items[i] = {uint32_t(a.index), i, ring_check(uint32_t(a.index), i)};
    if (r.enqueue_bulk_elem(items.data(), k) != k) fail("could not enqueue the items to claim back");
  } else if (a.side != "enqueue") {
    fail("--side=enqueue|dequeue");
  }
  std::atomic<uint64_t>& head = a.side == "enqueue" ? h->prod_head : h->cons_head;
  uint64_t word = head.load();
  if (!head.compare_exchange_strong(word, detail::claim_word(word, k, rt.claim_owners().tag())))
    fail("the claim's CAS lost a race in a test that runs no other claimer");
  if (a.side == "enqueue")
    for (unsigned i = 0; i < k; ++i)
      std::memset(h->slots + size_t((detail::claim_index(word) + i) & h->mask) * h->elem_size, 0xEE, h->elem_size);
  std::printf("CLAIMED %u at %u pid=%d\n", k, detail::claim_index(word), rt.self().pid);
  std::fflush(stdout);
  wait_for_stop();
  return 0;
}

int run_responder(Runtime& rt) {
  install_actions(rt);
  std::printf("RESPONDER id=%s pid=%d\n", rt.self().id.hex().c_str(), rt.self().pid);
  std::fflush(stdout);
  wait_for_stop();
  return 0;
}

void print_replies(const Replies& r) {
  for (auto& m : r.replies)
    std::printf("REPLY from=%s data=%.*s\n", m.from.hex().c_str(), static_cast<int>(m.data.size()),
                reinterpret_cast<const char*>(m.data.data()));
  for (auto& f : r.failures)
    std::printf("FAIL peer=%s error=%s detail=%s\n", f.peer.hex().c_str(), peer_error_name(f.error), f.detail.c_str());
}

void print_stats(Runtime& rt) {
  auto s = rt.channel().stats();
  std::printf("STATS sent=%llu by_mailbox=%llu\n", static_cast<unsigned long long>(s.sent),
              static_cast<unsigned long long>(s.sent_by_mailbox));
}

// Small (a mailbox slot), large (by socket behind a marker) and fd-carrying
// one-way messages interleaved, then a check that all came in order.
int run_sequence(Runtime& rt, const ProcessId& to, const Args& a) {
  auto& ch = rt.channel();
  const std::string me = rt.self().id.short_hex();
  for (int n = 0; n < a.sequence; ++n) {
    std::string text = me + ":" + std::to_string(n);
    // Every 50th is as large as a message may be (kMaxPayload).
    const size_t fill = n % 50 == 49 ? Channel::kMaxPayload - text.size() - 1 : n % 3 == 1 ? 20000 : 10;
    std::string payload = text + "|" + std::string(fill, 'x');
    std::vector<int> fds;
    int fd = -1;
    if (n % 7 == 0) {
      fd = memfd_create("mpod-seq", MFD_CLOEXEC);
      if (fd < 0 || write(fd, text.data(), text.size()) != ssize_t(text.size())) fail("memfd");
      fds.push_back(fd);
    }
    ch.send(to, "seq", bytes(payload), fds, std::chrono::milliseconds(a.timeout_ms));
    if (fd >= 0) close(fd);
  }
  Replies r = ch.request(to, "seq-check", bytes(me), std::chrono::milliseconds(a.timeout_ms));
  print_replies(r);
  print_stats(rt);
  return r.replies.size() == 1 ? 0 : 2;
}

// Stalls the peer's receive thread, then sends to it until its queue is full:
// the send must fail with a clear error within its timeout, and the primary
// must still answer meanwhile.
int run_stall(Runtime& rt, const ProcessId& to, const Args& a) {
  auto& ch = rt.channel();
  ch.send(to, "stall", bytes(std::to_string(a.stall_ms)));
  int sent = 0;
  const uint64_t t0 = monotonic_ns();
  try {
    for (; sent < 100000; ++sent) ch.send(to, "slow", bytes("x"), {}, std::chrono::milliseconds(200));
    std::printf("NEVER-FULL after %d sends\n", sent);
  } catch (const Error& e) {
    std::printf("FULL after %d sends in %.0f ms: %s\n", sent, (monotonic_ns() - t0) / 1e6, e.what());
  }
  ProcessId primary;
  for (auto& p : rt.processes())
    if (p.role == Role::primary && p.alive) primary = p.id;
  Replies r = ch.request(primary, "echo", bytes("still-there"), std::chrono::milliseconds(a.timeout_ms));
  print_replies(r);
  return 0;
}

int run_requester(Runtime& rt, const Args& a) {
  auto& ch = rt.channel();
  const auto timeout = std::chrono::milliseconds(a.timeout_ms);
  std::optional<ProcessId> to;
  if (a.to != "all") {
    to = ProcessId::parse(a.to);
    if (!to) fail("--to needs 'all' or a process id");
  }
  if (a.drop_mailbox) std::remove((rt.domain_dir() + "/mp/" + a.to + ".mbox").c_str());
  if (a.sequence > 0) return run_sequence(rt, *to, a);
  if (a.stall_ms > 0) return run_stall(rt, *to, a);
  if (a.threads == 0) {
    int fd = -1;
    if (!a.fd_text.empty()) {
      fd = memfd_create("mpod-test", MFD_CLOEXEC);
      if (fd < 0 || write(fd, a.fd_text.data(), a.fd_text.size()) != static_cast<ssize_t>(a.fd_text.size()))
        fail("memfd");
    }
    std::vector<int> fds;
    if (fd >= 0) fds.push_back(fd);
    const uint64_t t0 = monotonic_ns();
    Replies r = to ? ch.request(*to, a.action, bytes(a.data), timeout, fds) : ch.request_all(a.action, bytes(a.data), timeout, fds);
    print_replies(r);
    std::printf("DONE replies=%zu failures=%zu ms=%.1f\n", r.replies.size(), r.failures.size(), (monotonic_ns() - t0) / 1e6);
    print_stats(rt);
    return 0;
  }
  // Many concurrent requests: each payload is unique, each reply must echo it.
  std::atomic<int> matched{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < a.threads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < a.count; ++i) {
        std::string payload = rt.self().id.short_hex() + "-" + std::to_string(t) + "-" + std::to_string(i);
        Replies r = to ? ch.request(*to, "echo", bytes(payload), timeout) : ch.request_all("echo", bytes(payload), timeout);
        bool ok = !r.replies.empty() && r.failures.empty();
        for (auto& m : r.replies) ok = ok && m.text().starts_with("echo:" + payload + "|");
        (ok ? matched : wrong).fetch_add(1);
      }
    });
  for (auto& th : threads) th.join();
  std::printf("MATCHED %d WRONG %d\n", matched.load(), wrong.load());
  return wrong.load() == 0 ? 0 : 2;
}

// ---- member: a secondary that stays attached, for the liveness tests ----

// SIGUSR1 asks a member to ping the primary; blocked before any thread exists
// so that it queues for sigwait like the stop signals.
sigset_t member_signals() {
  sigset_t set = test::stop_signals();
  sigaddset(&set, SIGUSR1);
  return set;
}

// The primary's id as the registry says now; empty if there is no live one.
ProcessId live_primary(Runtime& rt) {
  for (auto& p : rt.processes())
    if (p.role == Role::primary && p.alive) return p.id;
  return ProcessId{};
}

// One mpod.ping to the primary: empty if it answered, else why not.
std::string ping_primary(Runtime& rt, int timeout_ms, double* ms) {
  const ProcessId primary = live_primary(rt);
  if (primary.empty()) return "error=dead detail=no live primary in the registry";
  const uint64_t t0 = monotonic_ns();
  Replies r = rt.channel().request(primary, "mpod.ping", {}, std::chrono::milliseconds(timeout_ms));
  *ms = (monotonic_ns() - t0) / 1e6;
  if (!r.replies.empty()) return "";
  if (r.failures.empty()) return "error=none detail=neither a reply nor a failure";
  return std::string("error=") + peer_error_name(r.failures.front().error) + " detail=" + r.failures.front().detail;
}

// Starts `n` members like this one: the same arguments without --spawn.
// Called before the Runtime starts (no threads yet, so fork is safe).
std::vector<pid_t> spawn_members(int n, int argc, char** argv) {
  std::vector<std::string> args;
  for (int k = 0; k < argc; ++k)
    if (!std::string(argv[k]).starts_with("--spawn=")) args.push_back(argv[k]);
  std::vector<char*> cargv;
  for (auto& x : args) cargv.push_back(x.data());
  cargv.push_back(nullptr);
  std::vector<pid_t> kids;
  std::fflush(stdout);
  for (int k = 0; k < n; ++k) {
    pid_t pid = fork();
    if (pid < 0) fail(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the member that started it
      execv(cargv[0], cargv.data());  // the tests pass an absolute path
      execv("/proc/self/exe", cargv.data());
      std::printf("CHECK-FAILED exec %s: %s\n", cargv[0], std::strerror(errno));
      std::fflush(stdout);
      _exit(2);
    }
    kids.push_back(pid);
  }
  return kids;
}

// Waits for the members spawn_members() started: 0 if all exited 0, else 2.
int wait_members(const std::vector<pid_t>& kids) {
  int code = 0;
  for (pid_t k : kids) {
    int st = 0;
    if (waitpid(k, &st, 0) != k) {
      std::printf("CHECK-FAILED waitpid %d: %s\n", int(k), std::strerror(errno));
      code = 2;
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      std::printf("CHECK-FAILED member pid %d ended with %s %d\n", int(k), WIFEXITED(st) ? "exit code" : "signal",
                  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
      code = 2;
    }
  }
  std::fflush(stdout);
  return code;
}

int run_member(Runtime& rt, const Args& a) {
  auto& ch = rt.channel();
  ch.register_action("quit", [](Incoming& in) {
    in.reply("quitting");
    kill(getpid(), SIGTERM);  // blocked in every thread: it queues for the sigwait below, PID 1 or not
  });
  if (a.events)
    ch.subscribe([](const ProcessInfo& p, PeerEvent e) {
      std::printf("EVENT %s %s t=%llu\n", peer_event_name(e), p.id.hex().c_str(),
                  static_cast<unsigned long long>(monotonic_ns()));
      std::fflush(stdout);
    });
  if (a.ask_primary) {
    double ms = 0;
    std::string why = ping_primary(rt, a.timeout_ms, &ms);
    if (!why.empty()) fail("asking the primary: " + why);
  }
  std::printf("MEMBER id=%s pid=%d host=%s t=%llu\n", rt.self().id.hex().c_str(), rt.self().pid,
              rt.self().hostname.c_str(), static_cast<unsigned long long>(monotonic_ns()));
  std::fflush(stdout);
  const sigset_t set = member_signals();
  for (;;) {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig != SIGUSR1) break;
    double ms = 0;
    std::string why = ping_primary(rt, a.timeout_ms, &ms);
    if (why.empty()) std::printf("PING-PRIMARY ok ms=%.3f\n", ms);
    else std::printf("PING-PRIMARY failed %s\n", why.c_str());
    std::fflush(stdout);
  }
  return 0;
}

// A well-formed "echo" request sent straight to a socket, by whoever runs
// this (the tests run it as a foreign uid): the receiver must drop it.
int raw_send(const std::string& socket_path) {
  os::Fd s(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  auto head = wire::encode_head(wire::Type::request, 1, ProcessId::random(), "echo", 15, 0);
  const os::Part parts[2] = {{head.bytes, head.len}, {"from-a-stranger", 15}};
  try {
    auto st = os::send_datagram(s.get(), socket_path, parts, 2, nullptr, 0);
    std::printf(st == os::SendStatus::ok ? "SENT\n" : "SEND-FAILED status=%d\n", int(st));
  } catch (const Error& e) {
    std::printf("SEND-FAILED %s\n", e.what());
  }
  return 0;
}

// ---- a process killed inside Runtime::start ----

// register-and-hang <domain dir> [claim-box]: what Runtime::start has made
// when it is killed after binding its channel socket and before it connects
// to the watcher: a registration, a mailbox, the bound socket, and the
// private directory of a bind in progress (named as os::bind_datagram_socket
// names it). Prints "REGISTERED id=<hex>", then "GOT" when a datagram
// reaches its socket (a request, or the doorbell of one). With claim-box, it
// then does what a replier killed while writing its reply has done: it
// claims the request's reply box in the requester's mailbox (box_writing)
// and prints "CLAIMED". Never answers; waits to be killed.
int register_and_hang(const std::string& domain, bool claim_box) {
  auto reg = registry::Registration::create(domain, Role::secondary);
  const ProcessId id = reg.info().id;
  const os::Dir mp = registry::open_domain_subdir(domain, "mp");
  auto box = mailbox::Mailbox::create(mp, ChannelImpl::mailbox_name(id));
  os::Fd sock = os::bind_datagram_socket(mp, ChannelImpl::socket_name(id), 0600);
  const std::string half_bind = std::string(os::kBindDirPrefix) + ChannelImpl::socket_name(id) + "-00112233aabbccdd";
  if (::mkdirat(mp.fd(), half_bind.c_str(), 0700) != 0) fail("mkdir " + mp.path_of(half_bind));
  // Asleep, as a receiver says so: a sender pushing into the mailbox rings the doorbell.
  const bool empty = box->prepare_to_sleep();
  std::printf("REGISTERED id=%s\n", id.hex().c_str());
  std::fflush(stdout);
  pollfd p{sock.get(), POLLIN, 0};
  while (empty && ::poll(&p, 1, -1) != 1) {
  }
  std::printf("GOT\n");
  std::fflush(stdout);
  if (claim_box) {
    std::optional<wire::Decoded> req;
    std::vector<uint8_t> keep;
    uint8_t buf[mailbox::kSlotData];
    uint32_t cursor = 0;
    for (int tries = 0; !req && tries < 10000; ++tries) {
      box->drain(cursor, buf, [&](int, std::span<const uint8_t> bytes) {
        keep.assign(bytes.begin(), bytes.end());
        wire::DecodeError why;
        req = wire::decode(keep, 0, &why);
      });
      if (!req) ::usleep(1000);
    }
    if (!req || req->routing.reply_box == 0) fail("no request with a reply box reached the mailbox");
    auto theirs = mailbox::Mailbox::open(mp, ChannelImpl::mailbox_name(req->sender));
    auto& state = theirs->box_state(req->routing.reply_box - 1);
    using channel_detail::box_word;
    uint32_t expected = box_word(req->routing.box_gen, mailbox::box_waiting);
    if (!state.compare_exchange_strong(expected, box_word(req->routing.box_gen, mailbox::box_writing)))
      fail("the reply box was not waiting");
    std::printf("CLAIMED\n");
    std::fflush(stdout);
  }
  for (;;) ::pause();
}

// ---- hostile senders: datagrams built by hand, as an attacker would ----

// A header as the wire defines it, without wire::encode_head's checks (body-flood
// must be able to claim more descriptors than a message may carry).
wire::WireHeader raw_header(wire::Type type, uint64_t request_id, const ProcessId& sender, size_t name_len,
                            size_t payload_len, uint32_t nfds, uint64_t lane_token) {
  wire::WireHeader h{};
  h.magic = wire::kMagic;
  h.version = wire::kVersion;
  h.type = static_cast<uint8_t>(type);
  h.name_len = static_cast<uint8_t>(name_len);
  h.request_id = request_id;
  std::memcpy(h.sender, sender.bytes.data(), 16);
  h.payload_len = static_cast<uint32_t>(payload_len);
  h.nfds = nfds;
  h.lane_token = lane_token;
  return h;
}

// Sends header + name + payload (+ `fds` by SCM_RIGHTS) to the socket at `path`,
// waiting while the receiver's queue is full. Empty on success, else why not.
std::string send_raw(int sock, const std::string& path, const wire::WireHeader& h, const std::string& name,
                     const std::string& payload, const std::vector<int>& fds) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return "socket path too long: " + path;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  iovec iov[3] = {{const_cast<wire::WireHeader*>(&h), sizeof h},
                  {const_cast<char*>(name.data()), name.size()},
                  {const_cast<char*>(payload.data()), payload.size()}};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  msghdr mh{};
  mh.msg_name = &sa;
  mh.msg_namelen = sizeof sa;
  mh.msg_iov = iov;
  mh.msg_iovlen = 3;
  if (!fds.empty()) {
    mh.msg_control = control.data();
    mh.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    if (sendmsg(sock, &mh, MSG_NOSIGNAL) >= 0) return "";
    const int err = errno;
    // Full queue, or too many of our descriptors in flight: the receiver is behind; wait for it.
    const bool retry = err == EINTR || err == EAGAIN || err == ENOBUFS || err == ETOOMANYREFS;
    if (!retry || std::chrono::steady_clock::now() > deadline) return std::strerror(err);
    if (err != EINTR) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

os::Fd raw_socket() {
  os::Fd s(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const timeval one_second{1, 0};
  setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &one_second, sizeof one_second);
  return s;
}

// A one-way message that claims to come from process `hex_id`.
int raw_send_as(const std::string& socket_path, const std::string& hex_id, const std::string& action,
                const std::string& text) {
  auto id = ProcessId::parse(hex_id);
  if (!id) {
    std::printf("raw-send-as: %s is not a process id\n", hex_id.c_str());
    return 2;
  }
  os::Fd s = raw_socket();
  auto h = raw_header(wire::Type::message, 0, *id, action.size(), text.size(), 0, 0);
  std::string err = send_raw(s.get(), socket_path, h, action, text, {});
  if (err.empty()) std::printf("SENT as %s\n", hex_id.c_str());
  else std::printf("SEND-FAILED %s\n", err.c_str());
  return 0;
}

// Marker bodies whose markers never come: each would be kept, with its
// descriptors, until it expires, unless the receiver bounds what it keeps.
int body_flood(const std::string& socket_path, int count, int nfds) {
  os::Fd s = raw_socket();
  os::Fd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  const std::vector<int> fds(size_t(nfds), devnull.get());
  const ProcessId sender = ProcessId::random();
  const std::string name = "echo", payload = "flood";
  int sent = 0;
  for (int i = 1; i <= count; ++i) {
    auto h = raw_header(wire::Type::request, uint64_t(i), sender, name.size(), payload.size(), uint32_t(nfds), uint64_t(i));
    std::string err = send_raw(s.get(), socket_path, h, name, payload, fds);
    if (!err.empty()) {
      std::printf("SEND-FAILED after %d: %s\n", sent, err.c_str());
      break;
    }
    ++sent;
  }
  std::printf("FLOODED sent=%d\n", sent);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int i = test::apply_hostname_arg(argc, argv);
  if (i >= argc) {
    std::fprintf(stderr, "usage: mpod-test-proc [--hostname=NAME] primary|pod|attach|member|responder|requester|... "
                         "[runtime options] [-- args]\n");
    return 2;
  }
  std::string mode = argv[i];
  if (mode == "raw-send" && i + 1 < argc) return raw_send(argv[i + 1]);
  if (mode == "register-and-hang" && i + 1 < argc)
    return register_and_hang(argv[i + 1], i + 2 < argc && std::string(argv[i + 2]) == "claim-box");
  if (mode == "raw-send-as" && i + 3 < argc) return raw_send_as(argv[i + 1], argv[i + 2], argv[i + 3], i + 4 < argc ? argv[i + 4] : "forged");
  if (mode == "body-flood" && i + 3 < argc) return body_flood(argv[i + 1], std::atoi(argv[i + 2]), std::atoi(argv[i + 3]));
  // Runtime options follow the mode; hand parse_options an argv whose [0] is the mode.
  char** rargv = argv + i;
  int rargc = argc - i;
  test::block_stop_signals();
  try {
    Options o;
    int first = parse_options(rargc, rargv, o);
    Args a;
    for (int k = first; k < rargc; ++k) {
      std::string s = rargv[k];
      if (s.starts_with("--greeting=")) a.greeting = s.substr(11);
      else if (s.starts_with("--pods=")) a.pods = std::stoi(s.substr(7));
      else if (s.starts_with("--index=")) a.index = std::stoi(s.substr(8));
      else if (s == "--expect-pid1") a.expect_pid1 = true;
      else if (s == "--hold") a.hold = true;
      else if (s.starts_with("--reserve=")) a.reserve = s.substr(10);
      else if (s.starts_with("--to=")) a.to = s.substr(5);
      else if (s.starts_with("--action=")) a.action = s.substr(9);
      else if (s.starts_with("--data=")) a.data = s.substr(7);
      else if (s.starts_with("--fd-text=")) a.fd_text = s.substr(10);
      else if (s.starts_with("--timeout=")) a.timeout_ms = std::stoi(s.substr(10));
      else if (s.starts_with("--threads=")) a.threads = std::stoi(s.substr(10));
      else if (s.starts_with("--count=")) a.count = std::stoi(s.substr(8));
      else if (s.starts_with("--sequence=")) a.sequence = std::stoi(s.substr(11));
      else if (s.starts_with("--stall=")) a.stall_ms = std::stoi(s.substr(8));
      else if (s == "--drop-mailbox") a.drop_mailbox = true;
      else if (s.starts_with("--make-ring=")) a.make_ring = s.substr(12);
      else if (s.starts_with("--ring=")) a.ring = s.substr(7);
      else if (s.starts_with("--side=")) a.side = s.substr(7);
      else if (s.starts_with("--total=")) a.total = std::stoull(s.substr(8));
      else if (s == "--burst") a.burst = true;
      else if (s == "--events") a.events = true;
      else if (s == "--ask-primary") a.ask_primary = true;
      else if (s.starts_with("--spawn=")) a.spawn = std::stoi(s.substr(8));
      else {
        std::fprintf(stderr, "mpod-test-proc: unknown argument %s\n", s.c_str());
        return 2;
      }
    }
    if (mode == "primary" && o.proc_type == ProcType::secondary) o.proc_type = ProcType::primary;
    if (mode == "pod" || mode == "responder" || mode == "requester" || mode == "member" || mode.starts_with("ring-"))
      o.proc_type = ProcType::secondary;
    if (mode == "member") {
      const sigset_t set = member_signals();
      sigprocmask(SIG_BLOCK, &set, nullptr);
      const std::vector<pid_t> kids = spawn_members(a.spawn, argc, argv);
      int code;
      {
        auto rt = Runtime::start(o);
        code = run_member(*rt, a);
      }  // detached before waiting for the members it started
      const int kids_code = wait_members(kids);
      return code != 0 ? code : kids_code;
    }
    auto rt = Runtime::start(o);
    if (mode == "primary") return run_primary(*rt, a);
    if (mode == "pod") return run_pod(*rt, a);
    if (mode == "attach") return run_attach(*rt, a);
    if (mode == "responder") return run_responder(*rt);
    if (mode == "ring-producer") return run_ring_producer(*rt, a);
    if (mode == "ring-consumer") return run_ring_consumer(*rt, a);
    if (mode == "ring-claim-and-hang") return run_ring_claim_and_hang(*rt, a);
    if (mode == "requester") return run_requester(*rt, a);
    std::fprintf(stderr, "mpod-test-proc: unknown mode %s\n", mode.c_str());
    return 2;
  } catch (const Error& e) {
    std::printf("ERROR %s: %s\n", errc_name(e.code()), e.what());
    return 1;
  }
}
