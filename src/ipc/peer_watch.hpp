// PeerWatch: how a process learns, without polling, that others attach,
// exit or die (docs/channel.md, "Liveness").
//
// One process of the domain is the watcher: whoever holds the exclusive OFD
// lock on <domain>/mp/watch.lock (the primary takes it before it is ready).
// It listens on <domain>/mp/<its id>.watch, a Unix stream socket, and
// writes its id into the lock file. Every other process holds one
// connection to it. The kernel ends a connection the moment its process
// dies, in whatever PID namespace: the watcher then tells the members that
// want to know (`gone`), and removes what a crashed member left behind. A
// member leaving cleanly says `bye` first, so its end is an exit, not a
// crash. Members that track() hear every arrival and every departure; the
// others hear only of the peers they named with watch_peer() (those they
// talk to), so a death wakes only the processes it concerns.
//
// When the watcher itself goes, every member sees its connection end at
// once, reports that, and competes for the lock: the winner becomes the
// watcher, the others connect to it. Until each known member has reconnected,
// the new watcher tests that member's registration lock every 20 ms (the only
// polling, and only during a hand-over).
//
// Costs: nothing while nothing happens (every thread sleeps in the kernel);
// one descriptor per member in the watcher, one in every other process.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../os/dir.hpp"
#include "../os/os.hpp"
#include "../os/dir_watch.hpp"
#include "../os/poller.hpp"
#include "mpod/channel.hpp"
#include "mpod/process.hpp"
#include "watch_wire.hpp"

namespace mpod {

class PeerWatch {
 public:
  struct Hooks {
    // A member attached (only once track() was called), exited or crashed.
    // Called on the watch thread, one event at a time, in the watcher's order.
    std::function<void(const ProcessInfo&, PeerEvent)> event;
    // The live members when track() took effect (`initial`), and again when
    // a new watcher took over (the receiver reconciles). On the watch thread.
    // Returns the peers the receiver knew that are gone from the list and
    // not alive: how each went is told later through `event`, by the watcher
    // (which remembers who crashed) rather than guessed from the registry
    // (a reaped crash and a clean exit both leave no registration).
    std::function<std::vector<ProcessInfo>(const std::vector<ProcessInfo>&, bool initial)> members;
    // Watcher only: removes what the crashed member `p` left behind. Returns
    // false while it still holds its registration lock (it is retried).
    std::function<bool(const ProcessInfo& p)> reap;
    // Watcher only, on taking over from a watcher that went: reaps every dead
    // process and returns those it reaped.
    std::function<std::vector<ProcessInfo>()> sweep;
  };
  struct Limits {
    size_t max_members = kMaxProcesses;  // this process included
    // Descriptors the watcher keeps free for everything else it does (its
    // links to peers, files it opens for a moment); an attach that would
    // leave fewer is refused.
    int reserve_fds = 8;
  };

  static constexpr const char* kLockName = "watch.lock";
  static std::string socket_name(const ProcessId& id) { return id.hex() + ".watch"; }

  // Joins the watch of the domain whose checked mp/ directory is `mp`.
  // `held_lock`: the watch lock, already taken (the primary), or empty to
  // compete for it. Returns as the watcher or as an admitted member; throws
  // busy with the watcher's reason if it refuses this process (descriptors,
  // the process limit), timed_out if no watcher answers in `admit_timeout_ns`.
  PeerWatch(std::string domain, os::Dir mp, ProcessInfo self, os::Fd held_lock, Hooks hooks,
            Limits limits, uint64_t admit_timeout_ns);
  static constexpr uint64_t kAdmitTimeoutNs = 30'000'000'000ull;
  // Leaves cleanly (bye), so the others see an exit.
  ~PeerWatch();
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

  // From now on attached events too. Returns once hooks.members was called
  // with the members alive now (at most `timeout_ns`; false if it was not).
  bool track(uint64_t timeout_ns = 10'000'000'000ull);
  // Asks to hear when `id` goes (hooks.event), without tracking everyone:
  // the channel names each peer it links to, so what waits on that peer
  // fails when it dies. Any thread; returns at once. A peer that is gone
  // already is reported as soon as the watcher reads the request.
  void watch_peer(const ProcessId& id);
  bool is_watcher() const noexcept { return watcher_.load(); }

 private:
  // A connection the watcher accepted.
  struct Conn {
    os::Fd fd;
    os::PeerCredentials cred;         // as the kernel recorded them at connect
    std::optional<ProcessInfo> member;  // once its hello was accepted
    bool subscribed = false;
    bool said_bye = false;
    std::set<std::string> interests;  // ids (hex) whose gone it asked for
    watch::FrameBuffer in;
    std::string out;                  // what the socket had no room for yet
    uint64_t hello_deadline_ns = 0;
  };
  struct Member {
    ProcessInfo info;
    uint64_t conn = 0;  // its connection's tag; 0 while it has not reconnected after a hand-over
  };
  // An event to send at the end of this turn of the watcher's loop.
  struct Event {
    ProcessId subject;
    bool attached;  // to members that track; a gone also goes to those interested in it
    std::string frame;
  };
  enum class Join { admitted, refused, retry };

  // Becomes the watcher if the lock is free, else connects and is admitted.
  // `*refusal`: the watcher's reason when it returns refused.
  Join try_join(std::string* refusal, uint64_t deadline_ns);
  Join handshake(os::Fd fd, std::string* refusal, uint64_t deadline_ns);
  void run();
  void member_loop();
  void elect();
  bool send_frame(watch::Frame type, const std::string& body);
  void wait_wake(int timeout_ms);

  // ---- watcher side (watcher.cpp) ----
  void become_watcher(bool takeover);
  void watcher_loop();
  void accept_ready();
  void refuse(os::Fd fd, const std::string& why);
  void on_readable(uint64_t tag);
  void on_writable(uint64_t tag);
  void on_frame(uint64_t tag, watch::Frame type, const std::string& body);
  void on_hello(uint64_t tag, const std::string& body);
  void on_interest(uint64_t tag, const std::string& body);
  // How a process that is not a member went: as this watcher saw it go, else
  // from its registration (left dead: crashed; none: exited). nullopt while
  // it is alive. Fills what is known of `*p` and marks it not alive.
  std::optional<PeerEvent> departure_of(ProcessInfo* p) const;
  void drop_conn(uint64_t tag, bool ended);
  void member_gone(const ProcessInfo& p, PeerEvent e);
  void announce(const ProcessInfo& p, PeerEvent e);
  void flush_events();
  void queue_out(Conn& c, uint64_t tag, const std::string& bytes);
  void check_awaiting();
  // Newcomers: registered, not yet members. One killed before its hello has
  // no connection to end, so its registration is tested until it connects:
  // a dead one is reported crashed (to whoever asked about it) and reaped.
  void note_newcomer(const ProcessId& id);
  void note_all_newcomers();  // every live registration that is not a member
  void on_registrations();    // procs_watch_ is readable
  void check_newcomers();
  void retry_reaps();
  // Sweeps the registry (hooks.sweep) `sweeps` times, the first in
  // `delay_ns`, then every kSweepRetryNs; run_due_sweep does it when due.
  void schedule_sweep(uint64_t delay_ns, int sweeps);
  void run_due_sweep();
  int next_timeout_ms() const;
  bool near_descriptor_limit(int newest_fd);
  void say_bye_to_members() noexcept;

  const std::string domain_;
  const os::Dir mp_;
  const ProcessInfo self_;
  const Hooks hooks_;
  const Limits limits_;
  os::Fd lock_;   // mp/watch.lock: held exclusively while this process is the watcher
  os::Fd wake_;   // eventfd: stop, or a track() request
  std::atomic<bool> stopping_{false};
  std::atomic<bool> watcher_{false};

  // Member side: the connection and who is at its other end. Watch thread only after the constructor.
  os::Fd conn_;
  ProcessInfo watcher_info_;  // the last watcher that admitted this process
  ProcessId candidate_;       // the process last asked to admit this one
  bool watcher_said_bye_ = false;
  watch::FrameBuffer in_;

  // track(): requested by any thread, done on the watch thread.
  std::mutex track_mu_;
  std::condition_variable track_cv_;
  bool track_wanted_ = false;  // under track_mu_
  bool tracking_ = false;      // under track_mu_: hooks.members has been called
  bool subscribe_sent_ = false;  // watch thread: to the current watcher

  // watch_peer(): the peers this member asked about, and whether the
  // current watcher has been told (all are told again after a hand-over).
  std::mutex interest_mu_;
  std::map<std::string, bool> interests_;  // id hex -> sent

  // Watcher side: watch thread only, except members_ (under members_mu_, read by track()).
  std::unique_ptr<os::Poller> poller_;
  os::Fd listener_;
  os::Fd spare_;  // a descriptor kept to close when accept() finds none left, to refuse that attach clearly
  std::map<uint64_t, Conn> conns_;
  uint64_t next_tag_ = 16;
  mutable std::mutex members_mu_;
  std::map<std::string, Member> members_;  // by id hex; this process is not one of them
  std::vector<Event> events_;               // to send at the end of this turn of the loop
  struct Reap {
    ProcessInfo p;
    uint64_t next_ns, give_up_ns;
  };
  std::vector<Reap> reaps_;
  uint64_t next_await_check_ns_ = 0;
  std::unique_ptr<os::DirWatch> procs_watch_;  // names created in procs/; null where inotify is refused
  struct Newcomer {
    uint64_t since_ns;  // first seen
    uint64_t next_ns;   // when its registration is tested next
  };
  std::map<std::string, Newcomer> newcomers_;  // by id hex
  // While members have yet to reconnect after a take-over: every departure
  // announced since it began (those the sweep found dead among them), sent
  // to each member as it reconnects, since it was not connected to hear them.
  bool handover_ = false;
  std::string handover_gone_;  // gone frames
  // The last departures, so an interest that arrives after its peer went is
  // answered with the right event.
  std::map<std::string, PeerEvent> recent_gone_;
  std::vector<std::string> recent_gone_order_;
  size_t recent_gone_next_ = 0;
  uint64_t last_fd_warning_ns_ = 0;
  // Sweeps for processes that died before they were members (schedule_sweep).
  static constexpr uint64_t kSweepFirstNs = 50'000'000, kSweepRetryNs = 1'000'000'000;
  static constexpr uint64_t kSweepEveryNs = 10'000'000'000ull;  // at most, on admissions
  int sweeps_left_ = 0;
  uint64_t sweep_at_ns_ = 0, last_sweep_ns_ = 0;

  std::thread thread_;
};

}  // namespace mpod
