// PeerWatch: joining, the member's side of the connection, and the election
// of a new watcher. The watcher's side is in watcher.cpp.
#include "peer_watch.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "../runtime/registry.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod {

namespace {
constexpr uint64_t kFrameSendTimeoutNs = 2'000'000'000ull;

// Sends all of `bytes` on a non-blocking connection, waiting for room up to
// `deadline_ns`. False if the peer has gone or it did not fit in time.
bool send_with_deadline(int fd, const std::string& bytes, uint64_t deadline_ns) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = os::send_some(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) return false;
    done += size_t(n);
    if (done == bytes.size()) break;
    const uint64_t now = os::monotonic_ns();
    if (now >= deadline_ns) return false;
    os::sleep_ns(std::min<uint64_t>(deadline_ns - now, 1'000'000));
  }
  return true;
}
}  // namespace

PeerWatch::PeerWatch(std::string domain, os::Dir mp, ProcessInfo self, os::Fd held_lock, Hooks hooks,
                     Limits limits, uint64_t admit_timeout_ns)
    : domain_(std::move(domain)), mp_(std::move(mp)), self_(std::move(self)), hooks_(std::move(hooks)), limits_(limits) {
  wake_ = os::make_event();
  if (held_lock) {
    lock_ = std::move(held_lock);
    become_watcher(false);
  } else {
    lock_ = mp_.open(kLockName, O_RDWR, mp_.owner());
    const uint64_t deadline = os::monotonic_ns() + admit_timeout_ns;
    uint64_t backoff = 100'000;
    for (;;) {
      std::string why;
      const Join j = try_join(&why, deadline);
      if (j == Join::admitted) break;
      if (j == Join::refused)
        throw Error(Errc::busy, "the watcher of " + domain_ + " (process " + candidate_.short_hex() +
                                    ") refused this process: " + why,
                    mp_.path());
      if (os::monotonic_ns() >= deadline)
        throw Error(Errc::timed_out,
                    "no watcher of " + domain_ + " admitted this process within " +
                        std::to_string(admit_timeout_ns / 1'000'000'000) +
                        " s: the process holding " + mp_.path_of(kLockName) +
                        " does not answer on its socket; check that the primary is not stopped or stuck",
                    mp_.path_of(kLockName));
      os::sleep_ns(backoff);
      backoff = std::min<uint64_t>(backoff * 2, 5'000'000);
    }
  }
  thread_ = std::thread([this] { run(); });
}

PeerWatch::~PeerWatch() {
  stopping_.store(true);
  os::signal_event(wake_.get());
  if (thread_.joinable()) thread_.join();
  if (watcher_.load()) {
    say_bye_to_members();
  } else if (conn_) {
    std::string bye;
    watch::append_frame(bye, watch::Frame::bye, {});
    send_with_deadline(conn_.get(), bye, os::monotonic_ns() + 100'000'000);
    conn_.reset();
  }
  lock_.reset();  // the next watcher may take over
}

PeerWatch::Join PeerWatch::try_join(std::string* refusal, uint64_t deadline_ns) {
  const std::string lock_path = mp_.path_of(kLockName);
  if (os::try_lock(lock_.get(), os::LockKind::exclusive, lock_path)) {
    become_watcher(true);
    return Join::admitted;
  }
  // The watcher writes its id into the lock file once it listens.
  char hex[32];
  if (!os::read_exact_at(lock_.get(), hex, sizeof hex, 0, lock_path)) return Join::retry;
  const auto id = ProcessId::parse({hex, sizeof hex});
  if (!id || *id == self_.id) return Join::retry;
  os::Fd fd = os::connect_stream_socket(mp_, socket_name(*id));
  if (!fd) return Join::retry;  // not listening yet (a new watcher), or gone since it wrote its id
  candidate_ = *id;
  return handshake(std::move(fd), refusal, deadline_ns);
}

PeerWatch::Join PeerWatch::handshake(os::Fd fd, std::string* refusal, uint64_t deadline_ns) {
  std::string hello;
  watch::append_frame(hello, watch::Frame::hello, watch::hello_body(self_.id));
  if (!send_with_deadline(fd.get(), hello, std::min(deadline_ns, os::monotonic_ns() + kFrameSendTimeoutNs)))
    return Join::retry;
  watch::FrameBuffer in;
  char buf[4096];
  for (;;) {
    watch::Frame type;
    std::string body;
    bool bad = false;
    if (in.next(&type, &body, &bad)) {
      if (type == watch::Frame::refuse) {
        *refusal = body.substr(0, 1000);
        return Join::refused;
      }
      ProcessInfo w;
      std::string_view v = body;
      const auto cred = os::peer_credentials(fd.get());
      if (type != watch::Frame::welcome || !watch::get_info(v, &w) || !v.empty() || !(w.id == candidate_) ||
          w.uid != cred.uid || !os::uid_is_trusted(cred.uid, cred.gid)) {
        MPOD_LOG(ipc, warning, "the watcher socket %s answered with a %s frame that is not a welcome from process %s "
                 "of a trusted uid (it runs as uid %u); trying again",
                 mp_.path_of(socket_name(candidate_)).c_str(), watch::frame_name(type),
                 candidate_.short_hex().c_str(), unsigned(cred.uid));
        return Join::retry;
      }
      watcher_info_ = w;
      watcher_said_bye_ = false;
      conn_ = std::move(fd);
      in_ = std::move(in);  // frames that followed the welcome are the member loop's
      subscribe_sent_ = false;
      {
        std::lock_guard g(interest_mu_);
        for (auto& [hex, sent] : interests_) sent = false;  // a new watcher knows none of them
      }
      MPOD_LOG(ipc, debug, "admitted by the watcher, %s", registry::describe(w).c_str());
      return Join::admitted;
    }
    if (bad) return Join::retry;
    const uint64_t now = os::monotonic_ns();
    if (now >= deadline_ns) return Join::retry;
    const int ms = int(std::min<uint64_t>((deadline_ns - now) / 1'000'000 + 1, 1000));
    const int r = os::wait_readable(fd.get(), wake_.get(), ms);
    if (r & 2) {
      if (stopping_.load()) return Join::retry;
      os::drain_event(wake_.get());  // a track() request: the member loop looks at it
    }
    if (!(r & 1)) continue;
    const ssize_t n = os::recv_some(fd.get(), buf, sizeof buf);
    if (n == 0) return Join::retry;  // it closed: it went, or is not the watcher any more
    if (n > 0) in.append(buf, size_t(n));
  }
}

bool PeerWatch::track(uint64_t timeout_ns) {
  std::unique_lock lk(track_mu_);
  if (tracking_) return true;
  track_wanted_ = true;
  if (std::this_thread::get_id() == thread_.get_id()) return false;  // the answer comes on this thread, later
  os::signal_event(wake_.get());
  return track_cv_.wait_for(lk, std::chrono::nanoseconds(timeout_ns), [this] { return tracking_; });
}

void PeerWatch::watch_peer(const ProcessId& id) {
  if (watcher_.load() || id == self_.id) return;  // the watcher sees every departure itself
  {
    std::lock_guard g(interest_mu_);
    if (!interests_.emplace(id.hex(), false).second) return;
  }
  os::signal_event(wake_.get());
}

void PeerWatch::run() {
  while (!stopping_.load()) {
    try {
      if (watcher_.load()) {
        watcher_loop();
      } else if (conn_) {
        member_loop();
      } else {
        elect();
      }
    } catch (const Error& e) {
      // Never leaves the thread: a failure here must not take the process down.
      MPOD_LOG(ipc, error, "peer watch of %s: %s; trying again in 100 ms", domain_.c_str(), e.what());
      wait_wake(100);
    }
  }
}

bool PeerWatch::send_frame(watch::Frame type, const std::string& body) {
  std::string f;
  watch::append_frame(f, type, body);
  return send_with_deadline(conn_.get(), f, os::monotonic_ns() + kFrameSendTimeoutNs);
}

void PeerWatch::wait_wake(int timeout_ms) {
  if (os::wait_readable(wake_.get(), -1, timeout_ms) & 1) os::drain_event(wake_.get());
}

void PeerWatch::member_loop() {
  char buf[65536];
  while (!stopping_.load()) {
    {
      std::lock_guard g(track_mu_);
      if (track_wanted_ && !subscribe_sent_) {
        subscribe_sent_ = true;
        send_frame(watch::Frame::subscribe, {});
      }
    }
    {
      std::string f;
      {
        std::lock_guard g(interest_mu_);
        for (auto& [hex, sent] : interests_)
          if (!sent) {
            watch::append_frame(f, watch::Frame::interest, watch::id_body(*ProcessId::parse(hex)));
            sent = true;
          }
      }
      if (!f.empty()) send_with_deadline(conn_.get(), f, os::monotonic_ns() + kFrameSendTimeoutNs);
    }
    bool ended = false;
    watch::Frame type;
    std::string body;
    bool bad = false;
    while (in_.next(&type, &body, &bad)) {
      std::string_view v = body;
      ProcessInfo p;
      PeerEvent e;
      std::vector<ProcessInfo> list;
      if (type == watch::Frame::attached && watch::get_info(v, &p) && v.empty()) {
        if (hooks_.event) hooks_.event(p, PeerEvent::attached);
      } else if (type == watch::Frame::gone && watch::get_gone(body, &p, &e)) {
        {
          std::lock_guard g(interest_mu_);
          interests_.erase(p.id.hex());
        }
        if (hooks_.event) hooks_.event(p, e);
      } else if (type == watch::Frame::peers && watch::get_peers(body, &list)) {
        std::unique_lock lk(track_mu_);
        const bool initial = !tracking_;
        lk.unlock();
        // Those it cannot place are asked about: the watcher answers how each went.
        if (hooks_.members)
          for (auto& gone : hooks_.members(list, initial)) watch_peer(gone.id);
        lk.lock();
        tracking_ = true;
        track_cv_.notify_all();
      } else if (type == watch::Frame::bye) {
        watcher_said_bye_ = true;
      } else {
        MPOD_LOG(ipc, warning, "ignored a malformed '%s' frame from the watcher %s", watch::frame_name(type),
                 watcher_info_.id.short_hex().c_str());
      }
    }
    if (bad) {
      MPOD_LOG(ipc, warning, "the watcher %s sent a malformed stream; reconnecting", watcher_info_.id.short_hex().c_str());
      ended = true;
    }
    if (!ended) {
      const int r = os::wait_readable(conn_.get(), wake_.get(), -1);
      if (r & 2) os::drain_event(wake_.get());
      if (r & 1) {
        for (;;) {
          const ssize_t n = os::recv_some(conn_.get(), buf, sizeof buf);
          if (n > 0) {
            in_.append(buf, size_t(n));
            continue;
          }
          ended = n == 0;
          break;
        }
      }
    }
    if (ended) {
      // The watcher has gone: an exit if it said bye, else a death. Everyone
      // sees its own connection end, so this is reported here, not relayed.
      const PeerEvent e = watcher_said_bye_ ? PeerEvent::exited : PeerEvent::crashed;
      conn_.reset();
      in_ = {};
      subscribe_sent_ = false;
      ProcessInfo w = watcher_info_;
      w.alive = false;
      {
        std::lock_guard g(interest_mu_);
        interests_.erase(w.id.hex());
      }
      MPOD_LOG(ipc, info, "the watcher %s %s; electing a new one", w.id.short_hex().c_str(), peer_event_name(e));
      if (hooks_.event) hooks_.event(w, e);
      return;
    }
  }
}

void PeerWatch::elect() {
  uint64_t backoff_ms = 1;
  bool logged_refusal = false;
  while (!stopping_.load()) {
    std::string why;
    const Join j = try_join(&why, os::monotonic_ns() + 5'000'000'000ull);
    if (j == Join::admitted) return;  // as the watcher, or a member of the new one
    if (j == Join::refused) {
      if (!logged_refusal)
        MPOD_LOG(ipc, error, "the new watcher %s refused this process: %s; peer events stop until it admits it "
                 "(retrying every second)", candidate_.short_hex().c_str(), why.c_str());
      logged_refusal = true;
      backoff_ms = 1000;
    }
    wait_wake(int(backoff_ms));
    if (j != Join::refused) backoff_ms = std::min<uint64_t>(backoff_ms * 2, 10);
  }
}

}  // namespace mpod
