// PeerWatch, the watcher's side: admits members, sees each connection end
// the moment its process dies, tells the others, reaps the dead.
#include <fcntl.h>

#include <algorithm>

#include "../runtime/registry.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"
#include "peer_watch.hpp"

namespace mpod {

namespace {
constexpr uint64_t kListenerTag = 1;
constexpr uint64_t kWakeTag = 2;
constexpr uint64_t kProcsTag = 3;
constexpr int kBacklog = 4096;  // an attach storm of a whole domain queues, never fails
constexpr uint64_t kHelloTimeoutNs = 10'000'000'000ull;
constexpr uint64_t kAwaitPeriodNs = 20'000'000;       // hand-over only: see peer_watch.hpp
constexpr uint64_t kReapRetryNs = 10'000'000;
constexpr uint64_t kReapGiveUpNs = 5'000'000'000ull;
constexpr size_t kMaxQueuedBytes = 8u << 20;          // per member that does not read
constexpr uint64_t kFdWarningEveryNs = 10'000'000'000ull;
constexpr size_t kRecentGone = 4096;                  // departures remembered for late interests
// A newcomer's registration is tested this often for its first 2 s (an
// attach takes milliseconds), then every 250 ms (one mapping gigabytes).
constexpr uint64_t kNewcomerFastNs = 20'000'000, kNewcomerSlowNs = 250'000'000, kNewcomerFastForNs = 2'000'000'000;
}  // namespace

void PeerWatch::become_watcher(bool takeover) {
  poller_ = std::make_unique<os::Poller>();
  listener_ = os::listen_stream_socket(mp_, socket_name(self_.id), 0600, kBacklog);
  spare_ = os::open_file("/dev/null", O_RDONLY | O_CLOEXEC);
  poller_->add(listener_.get(), kListenerTag);
  poller_->add(wake_.get(), kWakeTag);
  // New registrations are heard of before any is listed: none falls between.
  try {
    procs_watch_ = std::make_unique<os::DirWatch>(registry::open_procs(domain_));
    poller_->add(procs_watch_->fd(), kProcsTag);
  } catch (const Error& e) {
    procs_watch_.reset();
    MPOD_LOG(ipc, notice, "%s: processes killed before they finish attaching are found by sweeps only, as others "
             "attach", e.what());
  }
  const std::string hex = self_.id.hex();
  os::write_all_at(lock_.get(), hex.data(), hex.size(), 0, mp_.path_of(kLockName));
  std::vector<ProcessInfo> list;
  if (takeover) {
    // Whoever died before, the old watcher included, is reaped now; the
    // living are members until each reconnects or is found dead.
    std::vector<ProcessInfo> dead = hooks_.sweep ? hooks_.sweep() : std::vector<ProcessInfo>{};
    const uint64_t now = os::monotonic_ns();
    {
      std::lock_guard g(members_mu_);
      for (auto& p : registry::list(domain_)) {
        if (p.id == self_.id || p.id == watcher_info_.id) continue;
        if (p.alive) {
          members_[p.id.hex()] = Member{p, 0};
        } else {
          // Died after the sweep passed it (still locked then, free now):
          // reaped like any crashed member.
          dead.push_back(p);
          reaps_.push_back({p, now, now + kReapGiveUpNs});
        }
      }
      for (auto& [h, m] : members_) list.push_back(m.info);
    }
    next_await_check_ns_ = now + kAwaitPeriodNs;
    if (!watcher_info_.id.empty() && !watcher_said_bye_) reaps_.push_back({watcher_info_, now, now + kReapGiveUpNs});
    // A process that died during the hand-over (a would-be watcher, say) had
    // no watcher to see it go: it is reported here as crashed. The old
    // watcher is not: each member saw its own connection to it end.
    handover_ = true;
    handover_gone_.clear();
    for (auto& p : dead)
      if (!(p.id == watcher_info_.id)) announce(p, PeerEvent::crashed);
  }
  // (A successor has every live registration as a member to await.)
  if (!takeover) note_all_newcomers();
  last_sweep_ns_ = os::monotonic_ns();  // a primary reaped before it started; a successor just swept
  watcher_.store(true);
  MPOD_LOG(ipc, info, "this process is the watcher of %s%s", domain_.c_str(),
           takeover ? (" (took over; " + std::to_string(list.size()) + " members to reconnect)").c_str() : "");
  std::unique_lock lk(track_mu_);
  const bool initial = !tracking_;
  lk.unlock();
  if (hooks_.members)
    for (auto& p : hooks_.members(list, initial)) {
      ProcessInfo gone = p;
      if (auto e = departure_of(&gone)) announce(gone, *e);
    }
  lk.lock();
  tracking_ = true;  // the watcher knows every member
  track_cv_.notify_all();
}

void PeerWatch::watcher_loop() {
  os::Poller::Ready ready[64];
  while (!stopping_.load()) {
    const size_t n = poller_->wait(ready, 64, next_timeout_ms());
    for (size_t i = 0; i < n; ++i) {
      const auto& r = ready[i];
      if (r.tag == kListenerTag) {
        accept_ready();
      } else if (r.tag == kWakeTag) {
        os::drain_event(wake_.get());
      } else if (r.tag == kProcsTag) {
        on_registrations();
      } else {
        if (r.readable) on_readable(r.tag);
        if (r.writable) on_writable(r.tag);
      }
    }
    check_awaiting();
    check_newcomers();
    retry_reaps();
    run_due_sweep();
    flush_events();
  }
  flush_events();
}

void PeerWatch::schedule_sweep(uint64_t delay_ns, int sweeps) {
  if (!hooks_.sweep) return;
  const uint64_t at = os::monotonic_ns() + delay_ns;
  if (sweeps_left_ == 0 || at < sweep_at_ns_) sweep_at_ns_ = at;
  sweeps_left_ = std::max(sweeps_left_, sweeps);
}

void PeerWatch::run_due_sweep() {
  if (sweeps_left_ == 0 || os::monotonic_ns() < sweep_at_ns_) return;
  --sweeps_left_;
  sweep_at_ns_ = os::monotonic_ns() + kSweepRetryNs;
  last_sweep_ns_ = os::monotonic_ns();
  // Those reaped here were not members (a member's death is reported from
  // its connection, and reaping it first only makes its own reap find
  // nothing): nobody knew them, so nobody is told.
  const auto reaped = hooks_.sweep();
  if (!reaped.empty())
    MPOD_LOG(ipc, info, "swept %zu dead process(es) that never finished attaching", reaped.size());
}

int PeerWatch::next_timeout_ms() const {
  uint64_t next = UINT64_MAX;
  {
    std::lock_guard g(members_mu_);
    for (auto& [h, m] : members_)
      if (m.conn == 0) {
        next = next_await_check_ns_;
        break;
      }
  }
  for (auto& r : reaps_) next = std::min(next, r.next_ns);
  for (auto& [h, n] : newcomers_) next = std::min(next, n.next_ns);
  if (sweeps_left_ > 0) next = std::min(next, sweep_at_ns_);
  for (auto& [tag, c] : conns_)
    if (!c.member) next = std::min(next, c.hello_deadline_ns);
  if (next == UINT64_MAX) return -1;  // nothing to do until something happens
  const uint64_t now = os::monotonic_ns();
  return next <= now ? 0 : int((next - now) / 1'000'000 + 1);
}

bool PeerWatch::near_descriptor_limit(int newest_fd) {
  const int limit = os::descriptor_limit();
  const int room = limit - limits_.reserve_fds;
  // Descriptors are allocated lowest first: every one below the newest is open.
  if (newest_fd >= room) return true;
  if (newest_fd < room / 2) return false;
  try {
    return os::open_descriptors() > room;
  } catch (const Error&) {
    return true;  // could not even open /proc/self/fd
  }
}

void PeerWatch::refuse(os::Fd fd, const std::string& why) {
  std::string f;
  watch::append_frame(f, watch::Frame::refuse, why);
  os::send_some(fd.get(), f.data(), f.size());  // a fresh connection's buffer has room for it
  MPOD_LOG(ipc, notice, "refused a process: %s", why.c_str());
}

void PeerWatch::accept_ready() {
  for (;;) {
    os::PeerCredentials who;
    os::Fd c;
    try {
      c = os::accept_connection(listener_.get(), &who);
    } catch (const Error& e) {
      if (e.code() != Errc::no_memory) throw;
      // Out of descriptors: the spare one makes room to tell the newcomer why.
      spare_.reset();
      c = os::accept_connection(listener_.get(), &who);
      const int limit = os::descriptor_limit();
      if (c) refuse(std::move(c), "the watcher has all of its " + std::to_string(limit) +
                                      " descriptors in use; raise its descriptor limit (ulimit -n)");
      spare_ = os::open_file("/dev/null", O_RDONLY | O_CLOEXEC);
      continue;
    }
    if (!c) return;
    if (near_descriptor_limit(c.get())) {
      const int limit = os::descriptor_limit();
      const uint64_t now = os::monotonic_ns();
      if (now - last_fd_warning_ns_ > kFdWarningEveryNs) {
        MPOD_LOG(ipc, warning, "near the descriptor limit (%d): refusing new processes of %s until some leave; raise "
                 "this process's ulimit -n", limit, domain_.c_str());
        last_fd_warning_ns_ = now;
      }
      refuse(std::move(c), "the watcher (" + registry::describe(self_) + ") has nearly all of its descriptors in use (" +
                               std::to_string(limits_.reserve_fds) + " of " + std::to_string(limit) +
                               " kept free); raise its ulimit -n, or stop other processes of the domain first");
      continue;
    }
    const uint64_t tag = next_tag_++;
    Conn conn;
    conn.cred = who;
    conn.hello_deadline_ns = os::monotonic_ns() + kHelloTimeoutNs;
    try {
      poller_->add(c.get(), tag);
    } catch (const Error& e) {
      refuse(std::move(c), std::string("the watcher cannot watch one more connection: ") + e.what());
      continue;
    }
    conn.fd = std::move(c);
    conns_.emplace(tag, std::move(conn));
  }
}

void PeerWatch::on_readable(uint64_t tag) {
  char buf[65536];
  bool ended = false;
  for (;;) {
    auto it = conns_.find(tag);
    if (it == conns_.end()) return;
    const ssize_t n = os::recv_some(it->second.fd.get(), buf, sizeof buf);
    if (n > 0) {
      it->second.in.append(buf, size_t(n));
      if (size_t(n) == sizeof buf) continue;
    }
    ended = n == 0;
    break;
  }
  for (;;) {
    auto it = conns_.find(tag);
    if (it == conns_.end()) return;  // dropped by a frame
    watch::Frame type;
    std::string body;
    bool bad = false;
    if (!it->second.in.next(&type, &body, &bad)) {
      if (bad) {
        MPOD_LOG(ipc, warning, "dropped a connection that sent a malformed stream (uid %u)", unsigned(it->second.cred.uid));
        return drop_conn(tag, false);
      }
      break;
    }
    on_frame(tag, type, body);
  }
  if (ended) drop_conn(tag, true);
}

void PeerWatch::on_frame(uint64_t tag, watch::Frame type, const std::string& body) {
  Conn& c = conns_.at(tag);
  if (!c.member) {
    if (type == watch::Frame::hello) return on_hello(tag, body);
    MPOD_LOG(ipc, warning, "dropped a connection that sent '%s' before hello", watch::frame_name(type));
    return drop_conn(tag, false);
  }
  switch (type) {
    case watch::Frame::subscribe: {
      c.subscribed = true;
      std::vector<ProcessInfo> list{self_};
      {
        std::lock_guard g(members_mu_);
        for (auto& [h, m] : members_)
          if (!(m.info.id == c.member->id)) list.push_back(m.info);
      }
      std::string f;
      watch::append_frame(f, watch::Frame::peers, watch::peers_body(list));
      queue_out(c, tag, f);
      break;
    }
    case watch::Frame::bye:
      c.said_bye = true;
      break;
    case watch::Frame::interest:
      on_interest(tag, body);
      break;
    default:
      MPOD_LOG(ipc, warning, "ignored a '%s' frame from member %s", watch::frame_name(type), c.member->id.short_hex().c_str());
  }
}

void PeerWatch::on_hello(uint64_t tag, const std::string& body) {
  Conn& c = conns_.at(tag);
  auto reject = [&](const std::string& why) {
    poller_->remove(c.fd.get());
    refuse(std::move(c.fd), why);
    conns_.erase(tag);
  };
  uint8_t version = 0;
  ProcessId id;
  if (!watch::get_hello(body, &version, &id)) return reject("its hello is malformed");
  if (version != watch::kProtocolVersion)
    return reject("it speaks watch protocol " + std::to_string(version) + ", this watcher " +
                  std::to_string(watch::kProtocolVersion) + "; run the same mpod version in every process of a prefix");
  std::optional<ProcessInfo> p;
  try {
    p = registry::find(domain_, id);
  } catch (const Error& e) {
    return reject("its registration cannot be read: " + std::string(e.what()));
  }
  if (!p || !p->alive)
    return reject("process " + id.short_hex() + " is not a live registered process of " + domain_);
  if (p->uid != c.cred.uid)
    return reject("the connection comes from uid " + std::to_string(c.cred.uid) + ", but process " + id.short_hex() +
                  " is registered to uid " + std::to_string(p->uid));
  bool reconnect = false;
  {
    std::lock_guard g(members_mu_);
    auto m = members_.find(id.hex());
    if (m != members_.end() && m->second.conn != 0) return reject("process " + id.short_hex() + " is already connected");
    reconnect = m != members_.end();
    if (!reconnect && members_.size() + 1 >= limits_.max_members)
      return reject("the domain " + domain_ + " already has its maximum of " + std::to_string(limits_.max_members) +
                    " processes (a primary and " + std::to_string(limits_.max_members - 1) +
                    " secondaries); stop one before starting another");
    members_[id.hex()] = Member{*p, tag};
  }
  c.member = *p;
  newcomers_.erase(id.hex());
  // Processes killed before they connected leave a registration nobody
  // watches: while processes come, sweep for them now and then (never while
  // nothing happens).
  if (!reconnect && os::monotonic_ns() - last_sweep_ns_ >= kSweepEveryNs) schedule_sweep(kSweepFirstNs, 1);
  std::string f;
  watch::append_frame(f, watch::Frame::welcome, [&] {
    std::string b;
    watch::put_info(b, self_);
    return b;
  }());
  // A member back from the hand-over first hears who went while it was not connected.
  if (reconnect) f += handover_gone_;
  queue_out(c, tag, f);
  if (!reconnect) announce(*p, PeerEvent::attached);
}

void PeerWatch::on_interest(uint64_t tag, const std::string& body) {
  Conn& c = conns_.at(tag);
  ProcessId id;
  if (!watch::get_id(body, &id)) {
    MPOD_LOG(ipc, warning, "ignored a malformed interest from member %s", c.member->id.short_hex().c_str());
    return;
  }
  if (id == self_.id || id == c.member->id) return;  // the watcher's end is seen on the connection itself
  const std::string hex = id.hex();
  {
    std::lock_guard g(members_mu_);
    if (members_.count(hex)) {
      c.interests.insert(hex);
      return;
    }
  }
  // Not a member: gone already, or registered but not yet connected (its
  // departure is reported once it has connected).
  ProcessInfo p;
  p.id = id;
  const auto e = departure_of(&p);
  if (!e) {
    c.interests.insert(hex);
    note_newcomer(id);  // should it die before it connects, the interest is answered all the same
    return;
  }
  p.alive = false;
  std::string f;
  watch::append_frame(f, watch::Frame::gone, watch::gone_body(p, *e));
  queue_out(c, tag, f);
}

std::optional<PeerEvent> PeerWatch::departure_of(ProcessInfo* p) const {
  if (auto r = recent_gone_.find(p->id.hex()); r != recent_gone_.end()) {
    p->alive = false;
    return r->second;
  }
  std::optional<ProcessInfo> found;
  try {
    found = registry::find(domain_, p->id);
  } catch (const Error&) {
  }
  if (found && found->alive) return std::nullopt;
  if (found) *p = *found;
  p->alive = false;
  return found ? PeerEvent::crashed : PeerEvent::exited;
}

void PeerWatch::drop_conn(uint64_t tag, bool ended) {
  auto it = conns_.find(tag);
  if (it == conns_.end()) return;
  Conn c = std::move(it->second);
  conns_.erase(it);
  poller_->remove(c.fd.get());
  c.fd.reset();
  if (!c.member) {
    // A process that connected and went before its hello was admitted (or
    // refused) died attaching, most likely: its registration and endpoints
    // are reaped by a sweep of the registry, once its lock is surely free
    // and again a second later (a dying process drops its lock and its
    // connection in no fixed order).
    schedule_sweep(kSweepFirstNs, 2);
    (void)ended;
    return;
  }
  {
    std::lock_guard g(members_mu_);
    auto m = members_.find(c.member->id.hex());
    if (m != members_.end() && m->second.conn == tag) members_.erase(m);
  }
  member_gone(*c.member, c.said_bye ? PeerEvent::exited : PeerEvent::crashed);
}

void PeerWatch::member_gone(const ProcessInfo& p, PeerEvent e) {
  ProcessInfo dead = p;
  dead.alive = false;
  announce(dead, e);
  if (e == PeerEvent::crashed) {
    const uint64_t now = os::monotonic_ns();
    reaps_.push_back({dead, now, now + kReapGiveUpNs});
    retry_reaps();  // most often its files are free already
  }
}

void PeerWatch::announce(const ProcessInfo& p, PeerEvent e) {
  if (hooks_.event) hooks_.event(p, e);
  Event ev{p.id, e == PeerEvent::attached, {}};
  if (e != PeerEvent::attached) {
    const std::string hex = p.id.hex();
    if (recent_gone_order_.size() < kRecentGone) {
      recent_gone_order_.push_back(hex);
    } else {
      recent_gone_.erase(recent_gone_order_[recent_gone_next_]);
      recent_gone_order_[recent_gone_next_] = hex;
      recent_gone_next_ = (recent_gone_next_ + 1) % kRecentGone;
    }
    recent_gone_[hex] = e;
    if (handover_) watch::append_frame(handover_gone_, watch::Frame::gone, watch::gone_body(p, e));
  }
  if (e == PeerEvent::attached) {
    std::string b;
    watch::put_info(b, p);
    watch::append_frame(ev.frame, watch::Frame::attached, b);
  } else {
    watch::append_frame(ev.frame, watch::Frame::gone, watch::gone_body(p, e));
  }
  events_.push_back(std::move(ev));
}

void PeerWatch::flush_events() {
  if (events_.empty()) return;
  std::vector<uint64_t> tags;
  tags.reserve(conns_.size());
  for (auto& [tag, c] : conns_)
    if (c.member) tags.push_back(tag);
  for (uint64_t tag : tags) {
    auto it = conns_.find(tag);
    if (it == conns_.end()) continue;
    Conn& c = it->second;
    std::string bytes;
    for (auto& ev : events_) {
      if (ev.subject == c.member->id) continue;
      // erase() first: an interest is spent once its peer has gone.
      const bool interested = !ev.attached && c.interests.erase(ev.subject.hex()) > 0;
      if (c.subscribed || interested) bytes += ev.frame;
    }
    if (!bytes.empty()) queue_out(c, tag, bytes);
  }
  events_.clear();
}

void PeerWatch::queue_out(Conn& c, uint64_t tag, const std::string& bytes) {
  if (c.out.empty()) {
    const ssize_t n = os::send_some(c.fd.get(), bytes.data(), bytes.size());
    if (n < 0 || size_t(n) == bytes.size()) return;  // sent, or it has gone (its end of stream tells us)
    c.out.assign(bytes, size_t(n));
    poller_->modify(c.fd.get(), tag, true);
    return;
  }
  if (c.out.size() + bytes.size() > kMaxQueuedBytes) {
    MPOD_LOG(ipc, warning, "member %s does not read its watch connection (%zu bytes queued); its events are dropped",
             c.member ? c.member->id.short_hex().c_str() : "?", c.out.size());
    return;
  }
  c.out += bytes;
}

void PeerWatch::on_writable(uint64_t tag) {
  auto it = conns_.find(tag);
  if (it == conns_.end() || it->second.out.empty()) return;
  Conn& c = it->second;
  const ssize_t n = os::send_some(c.fd.get(), c.out.data(), c.out.size());
  if (n < 0) {
    c.out.clear();
  } else {
    c.out.erase(0, size_t(n));
  }
  if (c.out.empty()) poller_->modify(c.fd.get(), tag, false);
}

void PeerWatch::check_awaiting() {
  const uint64_t now = os::monotonic_ns();
  // Connections that never said hello are closed, so they cannot hold descriptors forever.
  for (auto it = conns_.begin(); it != conns_.end();) {
    if (!it->second.member && now >= it->second.hello_deadline_ns) {
      MPOD_LOG(ipc, notice, "closed a connection (uid %u) that did not say hello within %llu s",
               unsigned(it->second.cred.uid), static_cast<unsigned long long>(kHelloTimeoutNs / 1'000'000'000));
      poller_->remove(it->second.fd.get());
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
  if (now < next_await_check_ns_) return;
  std::vector<std::pair<ProcessInfo, PeerEvent>> gone;
  {
    std::lock_guard g(members_mu_);
    bool any = false;
    for (auto it = members_.begin(); it != members_.end();) {
      if (it->second.conn != 0) {
        ++it;
        continue;
      }
      any = true;
      std::optional<ProcessInfo> p;
      try {
        p = registry::find(domain_, it->second.info.id);
      } catch (const Error&) {
      }
      if (p && p->alive) {
        ++it;
        continue;
      }
      // No registration left: it exited, or died and was reaped (by a process
      // starting, say). It said bye to nobody, so it is taken to have
      // crashed: the safe mistake, since reaping what a clean exit left
      // finds nothing, while an exit taken for a crash leaks what it held.
      PeerEvent e = PeerEvent::crashed;
      if (auto r = recent_gone_.find(it->first); r != recent_gone_.end()) e = r->second;
      gone.push_back({it->second.info, e});
      it = members_.erase(it);
    }
    if (!any) {
      handover_ = false;  // the hand-over is over: every member reconnected or was found gone
      handover_gone_.clear();
      return;
    }
  }
  next_await_check_ns_ = now + kAwaitPeriodNs;
  for (auto& [p, e] : gone) member_gone(p, e);
}

void PeerWatch::note_newcomer(const ProcessId& id) {
  const std::string hex = id.hex();
  if (id == self_.id || newcomers_.count(hex)) return;
  {
    std::lock_guard g(members_mu_);
    if (members_.count(hex)) return;
  }
  const uint64_t now = os::monotonic_ns();
  newcomers_.emplace(hex, Newcomer{now, now + kNewcomerFastNs});
}

void PeerWatch::note_all_newcomers() {
  for (auto& p : registry::list(domain_))
    if (p.alive) note_newcomer(p.id);
}

void PeerWatch::on_registrations() {
  bool overflow = false;
  std::vector<std::string> names;
  try {
    names = procs_watch_->take_names(&overflow);
  } catch (const Error& e) {
    MPOD_LOG(ipc, warning, "%s; listing the registry instead", e.what());
    overflow = true;
  }
  for (auto& name : names)
    if (auto id = ProcessId::parse(name)) note_newcomer(*id);
  if (overflow) note_all_newcomers();
}

void PeerWatch::check_newcomers() {
  const uint64_t now = os::monotonic_ns();
  std::vector<std::pair<ProcessInfo, PeerEvent>> gone;
  for (auto it = newcomers_.begin(); it != newcomers_.end();) {
    if (now < it->second.next_ns) {
      ++it;
      continue;
    }
    {
      std::lock_guard g(members_mu_);
      if (members_.count(it->first)) {
        it = newcomers_.erase(it);
        continue;
      }
    }
    ProcessInfo p;
    p.id = *ProcessId::parse(it->first);
    const auto e = departure_of(&p);
    if (!e) {
      it->second.next_ns = now + (now - it->second.since_ns < kNewcomerFastForNs ? kNewcomerFastNs : kNewcomerSlowNs);
      ++it;
      continue;
    }
    // Gone before its hello: killed attaching (crashed, reaped below), or a
    // start that failed and unregistered (exited). It matters to those that
    // asked about it (a request to it fails now); subscribers drop the
    // event, since it never was their peer.
    gone.push_back({p, *e});
    it = newcomers_.erase(it);
  }
  for (auto& [p, e] : gone) member_gone(p, e);
}

void PeerWatch::retry_reaps() {
  const uint64_t now = os::monotonic_ns();
  for (auto it = reaps_.begin(); it != reaps_.end();) {
    if (it->next_ns > now) {
      ++it;
      continue;
    }
    bool done = true;
    try {
      done = !hooks_.reap || hooks_.reap(it->p);
    } catch (const Error& e) {
      MPOD_LOG(ipc, warning, "reaping %s: %s", registry::describe(it->p).c_str(), e.what());
    }
    if (!done && now >= it->give_up_ns) {
      MPOD_LOG(ipc, warning, "%s died, but its registration is still locked after %llu s (a child it forked holds "
               "it?); its files stay until that process exits", registry::describe(it->p).c_str(),
               static_cast<unsigned long long>(kReapGiveUpNs / 1'000'000'000));
      done = true;
    }
    if (done) {
      it = reaps_.erase(it);
    } else {
      it->next_ns = now + kReapRetryNs;
      ++it;
    }
  }
}

void PeerWatch::say_bye_to_members() noexcept {
  try {
    // No newcomer reaches this watcher any more; then every member hears bye.
    if (poller_ && listener_) poller_->remove(listener_.get());
    listener_.reset();
    mp_.remove(socket_name(self_.id));
    flush_events();
    std::string bye;
    watch::append_frame(bye, watch::Frame::bye, {});
    for (auto& [tag, c] : conns_)
      if (c.member) queue_out(c, tag, bye);
    // What did not fit gets a moment to drain; a member that does not read sees a crash.
    const uint64_t deadline = os::monotonic_ns() + 200'000'000;
    for (;;) {
      bool pending = false;
      for (auto& [tag, c] : conns_) pending |= !c.out.empty();
      const uint64_t now = os::monotonic_ns();
      if (!pending || now >= deadline) break;
      os::Poller::Ready ready[64];
      const size_t n = poller_->wait(ready, 64, int((deadline - now) / 1'000'000 + 1));
      for (size_t i = 0; i < n; ++i)
        if (ready[i].tag >= 16 && ready[i].writable) on_writable(ready[i].tag);
    }
  } catch (const Error& e) {
    MPOD_LOG(ipc, warning, "watcher shutdown: %s", e.what());
  }
  conns_.clear();
}

}  // namespace mpod
