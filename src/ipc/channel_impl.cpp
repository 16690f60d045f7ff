#include "channel_impl.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "../runtime/registry.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod {

// ---- Message and names ----

Message::Message(Message&& o) noexcept { *this = std::move(o); }
Message& Message::operator=(Message&& o) noexcept {
  if (this != &o) {
    for (int fd : fds) ::close(fd);
    from = o.from;
    name = std::move(o.name);
    data = std::move(o.data);
    fds = std::move(o.fds);
    o.fds.clear();
  }
  return *this;
}
Message::~Message() {
  for (int fd : fds) ::close(fd);
}
std::vector<int> Message::release_fds() noexcept { return std::exchange(fds, {}); }

const char* peer_error_name(PeerError e) noexcept {
  switch (e) {
    case PeerError::dead: return "dead";
    case PeerError::timed_out: return "timed_out";
    case PeerError::no_handler: return "no_handler";
    case PeerError::handler_failed: return "handler_failed";
    case PeerError::send_failed: return "send_failed";
  }
  return "?";
}

const char* peer_event_name(PeerEvent e) noexcept {
  switch (e) {
    case PeerEvent::attached: return "attached";
    case PeerEvent::exited: return "exited";
    case PeerEvent::crashed: return "crashed";
  }
  return "?";
}

// ---- requests in flight ----

struct ChannelImpl::Pending {
  uint64_t id = 0;
  std::string name;
  std::vector<ProcessId> waiting;  // peers that have neither answered nor failed
  Replies result;
  uint64_t deadline_ns = 0;
  std::function<void(Replies)> done;  // async only
  bool complete = false;
};

namespace {
constexpr uint64_t kMonitorPeriodNs = 20'000'000;  // 20 ms: peers' deaths are seen well within 100 ms

uint64_t deadline_after(Channel::Timeout t) {
  return os::monotonic_ns() + static_cast<uint64_t>(std::max<int64_t>(t.count(), 0)) * 1'000'000ull;
}

// Error replies carry the PeerError code in their first byte, then a text.
std::vector<uint8_t> error_payload(PeerError e, const std::string& text) {
  std::vector<uint8_t> out(1 + text.size());
  out[0] = static_cast<uint8_t>(e);
  std::memcpy(out.data() + 1, text.data(), text.size());
  return out;
}
}  // namespace

std::string ChannelImpl::socket_path(const std::string& domain, const ProcessId& id) {
  return socket_dir(domain) + "/" + id.hex() + ".sock";
}

void ChannelImpl::remove_socket(const std::string& domain, const ProcessId& id) noexcept {
  try {
    os::remove_file(socket_path(domain, id));
  } catch (const Error& e) {
    MPOD_LOG(ipc, warning, "%s", e.what());
  }
}

ChannelImpl::ChannelImpl(std::string domain_dir, ProcessInfo self, mode_t mode)
    : domain_(std::move(domain_dir)), self_(std::move(self)), socket_path_(socket_path(domain_, self_.id)) {
  os::make_dirs(socket_dir(domain_), (mode & 0660) | 0700 | ((mode & 0060) ? 0010 : 0));
  socket_ = os::bind_datagram_socket(socket_path_, mode);
  stop_event_ = os::make_event();
  // The peers alive now are known without events; subscribers hear of changes.
  for (auto& p : registry::list(domain_))
    if (p.alive && !(p.id == self_.id)) peers_.emplace(p.id.hex(), p);
  receiver_ = std::thread([this] { receive_loop(); });
  monitor_ = std::thread([this] { monitor_loop(); });
}

ChannelImpl::~ChannelImpl() {
  stopping_.store(true);
  os::signal_event(stop_event_.get());
  if (receiver_.joinable()) receiver_.join();
  if (monitor_.joinable()) monitor_.join();
  // Whoever still waits is told; async completions are dropped with the channel.
  {
    std::lock_guard g(mu_);
    for (auto& [id, p] : pending_) {
      for (auto& peer : p->waiting) p->result.failures.push_back({peer, PeerError::timed_out, "channel shut down"});
      p->waiting.clear();
      p->complete = true;
    }
    cv_.notify_all();
  }
  socket_.reset();
  remove_socket(domain_, self_.id);
}

// ---- handlers and subscriptions ----

void ChannelImpl::register_action(std::string_view name, Handler handler) {
  wire::validate_action_name(name);
  std::lock_guard g(handlers_mu_);
  if (handlers_.count(name))
    throw Error(Errc::already_exists, "action '" + std::string(name) + "' already has a handler in this process");
  handlers_.emplace(std::string(name), std::move(handler));
}

void ChannelImpl::unregister_action(std::string_view name) {
  std::lock_guard g(handlers_mu_);
  if (auto it = handlers_.find(name); it != handlers_.end()) handlers_.erase(it);
}

uint64_t ChannelImpl::subscribe(PeerEventHandler handler) {
  std::lock_guard g(peers_mu_);
  subscribers_.emplace(next_token_, std::move(handler));
  return next_token_++;
}

void ChannelImpl::unsubscribe(uint64_t token) {
  std::lock_guard g(peers_mu_);
  subscribers_.erase(token);
}

// ---- sending ----

ChannelImpl::Delivery ChannelImpl::deliver(const ProcessId& to, wire::Type type, uint64_t request_id,
                                           std::string_view name, std::span<const uint8_t> data,
                                           std::span<const int> fds, uint64_t deadline_ns) {
  auto head = wire::encode_head(type, request_id, self_.id, name, data.size(), fds.size());
  const os::Part parts[2] = {{head.data(), head.size()}, {data.data(), data.size()}};
  const std::string dest = socket_path(domain_, to);
  for (;;) {
    switch (os::send_datagram(socket_.get(), dest, parts, 2, fds.data(), fds.size())) {
      case os::SendStatus::ok:
        sent_.fetch_add(1, std::memory_order_relaxed);
        return Delivery::ok;
      case os::SendStatus::peer_gone:
        // Nobody bound there: dead, unless it registered a moment ago and binds next.
        if (deadline_ns == 0 || !registry::is_alive(domain_, to) || os::monotonic_ns() >= deadline_ns)
          return Delivery::dead;
        os::sleep_ns(200'000);
        break;
      case os::SendStatus::full:
        if (os::monotonic_ns() >= deadline_ns) return Delivery::full;
        if (!registry::is_alive(domain_, to)) return Delivery::dead;
        os::sleep_ns(50'000);
        break;
    }
  }
}

std::vector<ProcessId> ChannelImpl::live_peers() const {
  std::vector<ProcessId> out;
  for (auto& p : registry::list(domain_))
    if (p.alive && !(p.id == self_.id)) out.push_back(p.id);
  return out;
}

void ChannelImpl::send(const ProcessId& to, std::string_view name, std::span<const uint8_t> data,
                       std::span<const int> fds, Timeout timeout) {
  switch (deliver(to, wire::Type::message, 0, name, data, fds, deadline_after(timeout))) {
    case Delivery::ok: return;
    case Delivery::dead:
      throw Error(Errc::not_found, "cannot send '" + std::string(name) + "' to " + registry::describe(domain_, to) +
                                       ": it is not alive");
    case Delivery::full:
      throw Error(Errc::no_memory, "cannot send '" + std::string(name) + "' to " + registry::describe(domain_, to) +
                                       ": its socket queue stayed full for " + std::to_string(timeout.count()) +
                                       " ms; it is not reading its channel");
  }
}

std::vector<PeerFailure> ChannelImpl::send_all(std::string_view name, std::span<const uint8_t> data,
                                               std::span<const int> fds, Timeout timeout) {
  std::vector<PeerFailure> failed;
  const uint64_t deadline = deadline_after(timeout);
  for (auto& peer : live_peers()) {
    auto r = deliver(peer, wire::Type::message, 0, name, data, fds, deadline);
    if (r == Delivery::dead) failed.push_back({peer, PeerError::dead, "not alive"});
    if (r == Delivery::full) failed.push_back({peer, PeerError::send_failed, "socket queue full"});
  }
  return failed;
}

// ---- requests ----

std::shared_ptr<ChannelImpl::Pending> ChannelImpl::start_request(const std::vector<ProcessId>& to,
                                                                 std::string_view name,
                                                                 std::span<const uint8_t> data,
                                                                 std::span<const int> fds, Timeout timeout,
                                                                 std::function<void(Replies)> done) {
  wire::validate_action_name(name);
  auto p = std::make_shared<Pending>();
  p->name = name;
  p->deadline_ns = deadline_after(timeout);
  p->done = std::move(done);
  p->waiting = to;
  {
    std::lock_guard g(mu_);
    p->id = next_id_++;
    pending_.emplace(p->id, p);
  }
  requests_.fetch_add(1, std::memory_order_relaxed);
  for (auto& peer : to) {
    auto r = deliver(peer, wire::Type::request, p->id, name, data, fds, p->deadline_ns);
    if (r == Delivery::ok) continue;
    PeerFailure f{peer, r == Delivery::dead ? PeerError::dead : PeerError::send_failed,
                  r == Delivery::dead ? "not alive" : "socket queue full until the deadline"};
    std::lock_guard g(mu_);
    settle_locked(*p, peer, nullptr, &f);
  }
  std::lock_guard g(mu_);
  if (p->waiting.empty() && !p->complete) complete_locked(*p);
  if (p->done) os::signal_event(stop_event_.get());  // the receive thread recomputes its next deadline
  return p;
}

void ChannelImpl::settle_locked(Pending& p, const ProcessId& peer, Message* reply, const PeerFailure* failure) {
  auto it = std::find(p.waiting.begin(), p.waiting.end(), peer);
  if (it == p.waiting.end()) return;  // not asked, or already settled: a late or forged reply
  p.waiting.erase(it);
  if (reply) {
    p.result.replies.push_back(std::move(*reply));
    replies_.fetch_add(1, std::memory_order_relaxed);
  } else {
    p.result.failures.push_back(*failure);
    failures_.fetch_add(1, std::memory_order_relaxed);
  }
  if (p.waiting.empty()) complete_locked(p);
}

void ChannelImpl::complete_locked(Pending& p) {
  p.complete = true;
  pending_.erase(p.id);
  if (p.done) ready_.emplace_back(std::move(p.done), std::move(p.result));
  cv_.notify_all();
}

Replies ChannelImpl::wait_request(const std::shared_ptr<Pending>& p) {
  std::unique_lock lk(mu_);
  while (!p->complete) {
    const uint64_t now = os::monotonic_ns();
    if (now >= p->deadline_ns) {
      for (auto& peer : p->waiting) {
        p->result.failures.push_back({peer, PeerError::timed_out, "no reply within the timeout"});
        failures_.fetch_add(1, std::memory_order_relaxed);
      }
      p->waiting.clear();
      p->complete = true;
      pending_.erase(p->id);
      break;
    }
    cv_.wait_for(lk, std::chrono::nanoseconds(p->deadline_ns - now));
  }
  return std::move(p->result);
}

Replies ChannelImpl::request(const ProcessId& to, std::string_view name, std::span<const uint8_t> data,
                             Timeout timeout, std::span<const int> fds) {
  if (std::this_thread::get_id() == receiver_.get_id())
    throw Error(Errc::invalid_argument, "a synchronous request cannot be made from a channel handler; use request_async");
  return wait_request(start_request({to}, name, data, fds, timeout, {}));
}

Replies ChannelImpl::request_all(std::string_view name, std::span<const uint8_t> data, Timeout timeout,
                                 std::span<const int> fds) {
  if (std::this_thread::get_id() == receiver_.get_id())
    throw Error(Errc::invalid_argument, "a synchronous request cannot be made from a channel handler; use request_all_async");
  return wait_request(start_request(live_peers(), name, data, fds, timeout, {}));
}

void ChannelImpl::request_async(const ProcessId& to, std::string_view name, std::span<const uint8_t> data,
                                Timeout timeout, std::function<void(Replies)> done) {
  if (!done) throw Error(Errc::invalid_argument, "request_async needs a completion callback");
  start_request({to}, name, data, {}, timeout, std::move(done));
}

void ChannelImpl::request_all_async(std::string_view name, std::span<const uint8_t> data, Timeout timeout,
                                    std::function<void(Replies)> done) {
  if (!done) throw Error(Errc::invalid_argument, "request_all_async needs a completion callback");
  start_request(live_peers(), name, data, {}, timeout, std::move(done));
}

void ChannelImpl::fail_peer_everywhere(const ProcessId& peer, const std::string& why) {
  std::lock_guard g(mu_);
  std::vector<std::shared_ptr<Pending>> affected;
  for (auto& [id, p] : pending_)
    if (std::find(p->waiting.begin(), p->waiting.end(), peer) != p->waiting.end()) affected.push_back(p);
  PeerFailure f{peer, PeerError::dead, why};
  for (auto& p : affected) settle_locked(*p, peer, nullptr, &f);
  if (!affected.empty()) os::signal_event(stop_event_.get());
}

// ---- receiving ----

namespace {
class IncomingImpl final : public Incoming {
 public:
  using ReplyFn = std::function<void(wire::Type, std::span<const uint8_t>, std::span<const int>)>;
  IncomingImpl(Message m, bool request, ReplyFn fn) : msg_(std::move(m)), request_(request), reply_(std::move(fn)) {}
  const Message& message() const noexcept override { return msg_; }
  Message& message() noexcept override { return msg_; }
  bool is_request() const noexcept override { return request_; }
  void reply(std::span<const uint8_t> data, std::span<const int> fds) override {
    if (!request_) throw Error(Errc::invalid_argument, "'" + msg_.name + "' is a one-way message; it takes no reply");
    if (replied_) throw Error(Errc::already_exists, "request '" + msg_.name + "' was already answered");
    replied_ = true;
    reply_(wire::Type::reply, data, fds);
  }
  bool replied() const { return replied_; }

 private:
  Message msg_;
  bool request_;
  ReplyFn reply_;
  bool replied_ = false;
};
}  // namespace

void ChannelImpl::receive_loop() {
  std::vector<uint8_t> buf(wire::kMaxDatagram + 1);
  while (!stopping_.load()) {
    int timeout_ms = 100;
    {
      std::lock_guard g(mu_);
      const uint64_t now = os::monotonic_ns();
      for (auto& [id, p] : pending_)
        if (p->done) timeout_ms = std::min<int>(timeout_ms, p->deadline_ns > now ? int((p->deadline_ns - now) / 1'000'000) + 1 : 0);
    }
    if (!outbox_.empty()) timeout_ms = std::min(timeout_ms, 1);
    int ready = os::wait_readable(socket_.get(), stop_event_.get(), timeout_ms);
    if (ready & 2) os::drain_event(stop_event_.get());
    if (stopping_.load()) break;
    os::Received rx;
    try {
      while (os::recv_datagram(socket_.get(), buf.data(), buf.size(), &rx)) handle_datagram(buf.data(), rx);
    } catch (const Error& e) {
      MPOD_LOG(ipc, error, "%s", e.what());
    }
    flush_outbox();
    expire_requests();
    run_ready_callbacks();
  }
}

void ChannelImpl::handle_datagram(const uint8_t* buf, os::Received& rx) {
  Message msg;
  msg.fds = std::move(rx.fds);  // owned from here: closed if the datagram is dropped
  auto drop = [&](const std::string& why) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    MPOD_LOG(ipc, warning, "dropped a datagram on %s: %s", socket_path_.c_str(), why.c_str());
  };
  if (rx.truncated) return drop("larger than the largest valid message, or too many descriptors");
  if (!rx.has_creds || rx.uid != os::effective_uid())
    return drop("sent by uid " + std::to_string(rx.uid) + ", not this process's uid " + std::to_string(os::effective_uid()));
  wire::DecodeError why;
  auto d = wire::decode({buf, rx.len}, msg.fds.size(), &why);
  if (!d) return drop(why.reason);
  received_.fetch_add(1, std::memory_order_relaxed);
  msg.from = d->sender;
  msg.name = d->name;
  msg.data.assign(d->payload.begin(), d->payload.end());
  dispatch(*d, std::move(msg));
}

void ChannelImpl::dispatch(wire::Decoded& d, Message msg) {
  if (d.type == wire::Type::reply || d.type == wire::Type::error_reply) {
    std::lock_guard g(mu_);
    auto it = pending_.find(d.request_id);
    if (it == pending_.end()) return;  // late reply to a request that timed out
    auto p = it->second;
    if (d.type == wire::Type::reply) {
      settle_locked(*p, msg.from, &msg, nullptr);
    } else {
      PeerError e = !msg.data.empty() && msg.data[0] <= uint8_t(PeerError::send_failed) ? PeerError(msg.data[0])
                                                                                      : PeerError::handler_failed;
      std::string text = msg.data.empty() ? "" : std::string(msg.text().substr(1));
      PeerFailure f{msg.from, e, text};
      settle_locked(*p, msg.from, nullptr, &f);
    }
    return;
  }
  const bool is_request = d.type == wire::Type::request;
  const ProcessId from = msg.from;
  const uint64_t rid = d.request_id;
  const std::string name = msg.name;
  auto answer = [this, from, rid, name](wire::Type t, std::span<const uint8_t> data, std::span<const int> fds) {
    reply_or_queue(from, t, rid, name, data, fds);
  };
  Handler h;
  {
    std::lock_guard g(handlers_mu_);
    if (auto it = handlers_.find(name); it != handlers_.end()) h = it->second;
  }
  if (!h) {
    MPOD_LOG(ipc, info, "no handler for action '%s' (from %s)", name.c_str(), from.short_hex().c_str());
    if (is_request) {
      auto p = error_payload(PeerError::no_handler, "no handler for action '" + name + "' in process " + self_.id.short_hex());
      answer(wire::Type::error_reply, p, {});
    }
    return;
  }
  IncomingImpl in(std::move(msg), is_request, answer);
  try {
    h(in);
  } catch (const std::exception& e) {
    MPOD_LOG(ipc, warning, "handler of '%s' threw: %s", name.c_str(), e.what());
    if (is_request && !in.replied()) answer(wire::Type::error_reply, error_payload(PeerError::handler_failed, e.what()), {});
  } catch (...) {
    if (is_request && !in.replied()) answer(wire::Type::error_reply, error_payload(PeerError::handler_failed, "unknown exception"), {});
  }
}

void ChannelImpl::reply_or_queue(const ProcessId& to, wire::Type type, uint64_t request_id,
                                 const std::string& name, std::span<const uint8_t> data,
                                 std::span<const int> fds) {
  if (outbox_.empty()) {  // keep replies to one peer in order: only jump the queue when there is none
    switch (deliver(to, type, request_id, name, data, fds, 0)) {
      case Delivery::ok: return;
      case Delivery::dead:
        MPOD_LOG(ipc, info, "requester %s of '%s' died before its reply", to.short_hex().c_str(), name.c_str());
        return;
      case Delivery::full: break;
    }
  }
  Outgoing o{to, type, request_id, name, std::vector<uint8_t>(data.begin(), data.end()), {}, deadline_after(Timeout(5000))};
  for (int fd : fds) o.fds.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  outbox_.push_back(std::move(o));
}

void ChannelImpl::flush_outbox() {
  while (!outbox_.empty()) {
    Outgoing& o = outbox_.front();
    std::vector<int> fds;
    for (auto& f : o.fds) fds.push_back(f.get());
    Delivery d = deliver(o.to, o.type, o.request_id, o.name, o.data, fds, 0);
    if (d == Delivery::full && os::monotonic_ns() < o.deadline_ns) return;  // still full: try again soon
    if (d == Delivery::full)
      MPOD_LOG(ipc, warning, "dropped the reply to '%s' for %s: its socket queue stayed full for 5 s", o.name.c_str(),
               o.to.short_hex().c_str());
    outbox_.pop_front();
  }
}

void ChannelImpl::expire_requests() {
  std::lock_guard g(mu_);
  const uint64_t now = os::monotonic_ns();
  std::vector<std::shared_ptr<Pending>> expired;
  for (auto& [id, p] : pending_)
    if (p->done && now >= p->deadline_ns) expired.push_back(p);
  for (auto& p : expired) {
    for (auto& peer : p->waiting) {
      p->result.failures.push_back({peer, PeerError::timed_out, "no reply within the timeout"});
      failures_.fetch_add(1, std::memory_order_relaxed);
    }
    p->waiting.clear();
    complete_locked(*p);
  }
}

void ChannelImpl::run_ready_callbacks() {
  std::vector<std::pair<std::function<void(Replies)>, Replies>> ready;
  {
    std::lock_guard g(mu_);
    ready.swap(ready_);
  }
  for (auto& [fn, result] : ready) {
    try {
      fn(std::move(result));
    } catch (const std::exception& e) {
      MPOD_LOG(ipc, warning, "an async request's completion threw: %s", e.what());
    }
  }
}

// ---- peers ----

void ChannelImpl::monitor_loop() {
  while (!stopping_.load()) {
    os::sleep_ns(kMonitorPeriodNs);
    if (stopping_.load()) break;
    std::vector<std::pair<ProcessInfo, PeerEvent>> events;
    try {
      std::map<std::string, ProcessInfo> now;
      for (auto& p : registry::list(domain_))
        if (!(p.id == self_.id)) now.emplace(p.id.hex(), p);
      std::lock_guard g(peers_mu_);
      for (auto& [hex, p] : now)
        if (p.alive && !peers_.count(hex)) {
          peers_.emplace(hex, p);
          events.push_back({p, PeerEvent::attached});
        }
      for (auto it = peers_.begin(); it != peers_.end();) {
        auto n = now.find(it->first);
        if (n != now.end() && n->second.alive) {
          ++it;
          continue;
        }
        // Still registered but unlocked: it died. Gone from the registry: it exited
        // (or died and was reaped within one period; the registry no longer says which).
        ProcessInfo info = n != now.end() ? n->second : it->second;
        info.alive = false;
        events.push_back({info, n != now.end() ? PeerEvent::crashed : PeerEvent::exited});
        it = peers_.erase(it);
      }
    } catch (const Error& e) {
      MPOD_LOG(ipc, warning, "peer monitor: %s", e.what());
      continue;
    }
    for (auto& [p, e] : events) {
      if (e != PeerEvent::attached) fail_peer_everywhere(p.id, std::string("the peer ") + peer_event_name(e));
      MPOD_LOG(ipc, info, "peer %s %s (host %s, pid %d)", p.id.short_hex().c_str(), peer_event_name(e),
               p.hostname.c_str(), p.pid);
      std::vector<PeerEventHandler> subs;
      {
        std::lock_guard g(peers_mu_);
        for (auto& [t, h] : subscribers_) subs.push_back(h);
      }
      for (auto& h : subs) {
        try {
          h(p, e);
        } catch (const std::exception& ex) {
          MPOD_LOG(ipc, warning, "a peer event subscriber threw: %s", ex.what());
        }
      }
    }
  }
}

Channel::Stats ChannelImpl::stats() const {
  Stats s;
  s.sent = sent_.load();
  s.received = received_.load();
  s.dropped = dropped_.load();
  s.requests = requests_.load();
  s.replies = replies_.load();
  s.failures = failures_.load();
  s.socket_path = socket_path_;
  {
    std::lock_guard g(peers_mu_);
    s.peers = peers_.size();
  }
  std::lock_guard g(mu_);
  s.pending_requests = pending_.size();
  return s;
}

}  // namespace mpod
