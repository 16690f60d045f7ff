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
  int box = -1;      // our reply box the single peer answers into, or -1
  uint32_t gen = 0;  // the box generation of this request
};

// Our end of the way to one peer.
struct ChannelImpl::PeerLink {
  ProcessId id;
  std::string socket_path;
  mailbox::MailboxPtr mailbox;  // null: it has none we may open
  int lane = -1;                // ours in its mailbox; -1: socket only
  std::mutex send_mu;           // our threads take turns on the lane, so it has one producer
  uint64_t next_token = 1;      // for markers; under send_mu
};

namespace {
constexpr uint64_t kMonitorPeriodNs = 20'000'000;   // 20 ms: peers' deaths are seen well within 100 ms
constexpr uint64_t kBodyExpiryNs = 30'000'000'000;  // a marker body whose marker never came (sender died)

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

uint32_t box_word(uint32_t gen, mailbox::BoxPhase phase) { return (gen << 2) | phase; }
}  // namespace

std::string ChannelImpl::socket_path(const std::string& domain, const ProcessId& id) {
  return socket_dir(domain) + "/" + id.hex() + ".sock";
}

std::string ChannelImpl::mailbox_path(const std::string& domain, const ProcessId& id) {
  return socket_dir(domain) + "/" + id.hex() + ".mbox";
}

void ChannelImpl::remove_endpoint(const std::string& domain, const ProcessId& id) noexcept {
  for (const auto& path : {socket_path(domain, id), mailbox_path(domain, id)}) {
    try {
      os::remove_file(path);
    } catch (const Error& e) {
      MPOD_LOG(ipc, warning, "%s", e.what());
    }
  }
}

ChannelImpl::ChannelImpl(std::string domain_dir, ProcessInfo self, mode_t mode)
    : domain_(std::move(domain_dir)), self_(std::move(self)), socket_path_(socket_path(domain_, self_.id)) {
  os::make_dirs(socket_dir(domain_), (mode & 0660) | 0700 | ((mode & 0060) ? 0010 : 0));
  // The mailbox exists before the socket: a peer that finds our socket finds our mailbox.
  inbox_ = mailbox::Mailbox::create(mailbox_path(domain_, self_.id), mode);
  socket_ = os::bind_datagram_socket(socket_path_, mode);
  stop_event_ = os::make_event();
  for (int b = int(mailbox::kBoxes) - 1; b >= 0; --b) free_boxes_.push_back(b);
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
    std::vector<std::shared_ptr<Pending>> all;
    for (auto& [id, p] : pending_) all.push_back(p);
    for (auto& p : all) {
      for (auto& peer : p->waiting) p->result.failures.push_back({peer, PeerError::timed_out, "channel shut down"});
      p->waiting.clear();
      p->done = nullptr;
      complete_locked(*p);
    }
  }
  // Our lanes in others' mailboxes are free for their next senders.
  {
    std::lock_guard g(links_mu_);
    for (auto& [hex, l] : links_)
      if (l->mailbox && l->lane >= 0) l->mailbox->release_lane(l->lane, self_.id);
    links_.clear();
  }
  for (auto& [key, b] : bodies_)
    for (int fd : b.fds) ::close(fd);
  socket_.reset();
  remove_endpoint(domain_, self_.id);
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

bool ChannelImpl::owner_is_dead(uint64_t tag) const {
  for (auto& p : registry::list(domain_))
    if (p.alive && mailbox::owner_tag(p.id) == tag) return false;
  return true;
}

std::shared_ptr<ChannelImpl::PeerLink> ChannelImpl::link_to(const ProcessId& to) {
  const std::string hex = to.hex();
  {
    std::lock_guard g(links_mu_);
    if (auto it = links_.find(hex); it != links_.end()) return it->second;
  }
  auto l = std::make_shared<PeerLink>();
  l->id = to;
  l->socket_path = socket_path(domain_, to);
  try {
    l->mailbox = mailbox::Mailbox::open(mailbox_path(domain_, to));
  } catch (const Error& e) {
    MPOD_LOG(ipc, warning, "%s; messages to it go by socket", e.what());
  }
  if (!l->mailbox && !os::path_exists(l->socket_path)) return l;  // not bound yet: decide again next time
  if (l->mailbox) {
    l->lane = l->mailbox->claim_lane(self_.id, [this](uint64_t tag) { return owner_is_dead(tag); });
    if (l->lane < 0)
      MPOD_LOG(ipc, info, "every lane of %s is taken by a live sender; messages to it go by socket",
               l->mailbox->path().c_str());
  }
  std::lock_guard g(links_mu_);
  auto [it, fresh] = links_.emplace(hex, l);
  if (!fresh && l->lane >= 0 && it->second->lane != l->lane) l->mailbox->release_lane(l->lane, self_.id);
  return it->second;
}

ChannelImpl::Delivery ChannelImpl::socket_send(const ProcessId& to, const std::string& dest, const os::Part* parts,
                                               size_t nparts, std::span<const int> fds, uint64_t deadline_ns) {
  for (;;) {
    switch (os::send_datagram(socket_.get(), dest, parts, nparts, fds.data(), fds.size())) {
      case os::SendStatus::ok:
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

ChannelImpl::Delivery ChannelImpl::wait_for_room(PeerLink& l, uint64_t deadline_ns) {
  uint64_t next_alive_check = 0;
  for (uint32_t step = 0;; ++step) {
    if (l.mailbox->has_room(l.lane)) return Delivery::ok;
    // Full: the receiver is behind. Spin a little, then sleep in short steps.
    const uint64_t now = os::monotonic_ns();
    if (now >= deadline_ns) return Delivery::full;
    if (now >= next_alive_check) {
      if (!registry::is_alive(domain_, l.id)) return Delivery::dead;
      next_alive_check = now + 1'000'000;
    }
    if (step < 256) os::spin_pause(step);
    else os::sleep_ns(20'000);
  }
}

void ChannelImpl::ring_doorbell(PeerLink& l) {
  if (!l.mailbox->take_doorbell()) return;
  auto head = wire::encode_head(wire::Type::doorbell, 0, self_.id, "", 0, 0);
  const os::Part part{head.bytes, head.len};
  // A full queue needs no doorbell: the receiver wakes for what is queued.
  os::send_datagram(socket_.get(), l.socket_path, &part, 1, nullptr, 0);
}

ChannelImpl::Delivery ChannelImpl::deliver(const ProcessId& to, wire::Type type, uint64_t request_id,
                                           std::string_view name, std::span<const uint8_t> data,
                                           std::span<const int> fds, uint64_t deadline_ns, wire::Routing routing) {
  auto l = link_to(to);
  if (l->lane < 0) {
    auto head = wire::encode_head(type, request_id, self_.id, name, data.size(), fds.size(), routing);
    const os::Part parts[2] = {{head.bytes, head.len}, {data.data(), data.size()}};
    Delivery d = socket_send(to, l->socket_path, parts, 2, fds, deadline_ns);
    if (d == Delivery::ok) {
      sent_.fetch_add(1, std::memory_order_relaxed);
    }
    return d;
  }
  std::unique_lock lk(l->send_mu, std::defer_lock);
  if (deadline_ns == 0) {
    if (!lk.try_lock()) return Delivery::full;  // the receive thread never waits on our other threads
  } else {
    lk.lock();
  }
  auto head = wire::encode_head(type, request_id, self_.id, name, data.size(), fds.size(), routing);
  // We are the lane's only producer (send_mu): room found now stays until we push.
  Delivery d = wait_for_room(*l, deadline_ns);
  if (d == Delivery::ok && fds.empty() && head.len + data.size() <= mailbox::kSlotData) {
    const os::Part parts[2] = {{head.bytes, head.len}, {data.data(), data.size()}};
    l->mailbox->push(l->lane, parts);
  } else if (d == Delivery::ok) {
    // Too large for a slot, or carrying descriptors: the body goes by socket
    // first, then a marker in the lane says where it stands in the order.
    routing.lane_token = l->next_token++;
    head = wire::encode_head(type, request_id, self_.id, name, data.size(), fds.size(), routing);
    const os::Part parts[2] = {{head.bytes, head.len}, {data.data(), data.size()}};
    d = socket_send(to, l->socket_path, parts, 2, fds, deadline_ns);
    if (d == Delivery::ok) {
      auto marker = wire::encode_head(wire::Type::marker, 0, self_.id, "", 0, 0, {0, 0, routing.lane_token});
      const os::Part mp{marker.bytes, marker.len};
      l->mailbox->push(l->lane, {&mp, 1});
    }
  }
  lk.unlock();
  if (d != Delivery::ok) return d;
  sent_.fetch_add(1, std::memory_order_relaxed);
  lane_sent_.fetch_add(1, std::memory_order_relaxed);
  ring_doorbell(*l);
  return Delivery::ok;
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
                                                                 std::function<void(Replies)> done, int box) {
  wire::validate_action_name(name);
  auto p = std::make_shared<Pending>();
  p->name = name;
  p->deadline_ns = deadline_after(timeout);
  p->done = std::move(done);
  p->waiting = to;
  wire::Routing routing;
  if (box >= 0) {
    // The box is ours alone until released; a new generation tells late
    // replies to an earlier request apart.
    p->box = box;
    p->gen = box_gen_[box] = (box_gen_[box] + 1) & 0x3fffffff;
    inbox_->box_state(uint32_t(box)).store(box_word(p->gen, mailbox::box_waiting), std::memory_order_release);
    routing = {uint32_t(box) + 1, p->gen, 0};
  }
  {
    std::lock_guard g(mu_);
    p->id = next_id_++;
    pending_.emplace(p->id, p);
  }
  requests_.fetch_add(1, std::memory_order_relaxed);
  for (auto& peer : to) {
    auto r = deliver(peer, wire::Type::request, p->id, name, data, fds, p->deadline_ns, routing);
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

void ChannelImpl::settle_reply_locked(Pending& p, wire::Type type, Message& msg) {
  if (type == wire::Type::reply) return settle_locked(p, msg.from, &msg, nullptr);
  PeerError e = !msg.data.empty() && msg.data[0] <= uint8_t(PeerError::send_failed) ? PeerError(msg.data[0])
                                                                                  : PeerError::handler_failed;
  std::string text = msg.data.empty() ? "" : std::string(msg.text().substr(1));
  PeerFailure f{msg.from, e, text};
  settle_locked(p, msg.from, nullptr, &f);
}

void ChannelImpl::complete_locked(Pending& p) {
  p.complete = true;
  pending_.erase(p.id);
  if (p.done) ready_.emplace_back(std::move(p.done), std::move(p.result));
  if (p.box >= 0) {
    // A reply written into the box meanwhile wins; otherwise the requester
    // reads the result from `p`.
    uint32_t expected = box_word(p.gen, mailbox::box_waiting);
    auto& state = inbox_->box_state(uint32_t(p.box));
    if (state.compare_exchange_strong(expected, box_word(p.gen, mailbox::box_done), std::memory_order_acq_rel))
      os::futex_wake(&state);
  }
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

// Waits for the reply box of a single-peer request: polls it briefly (a
// reply usually comes within microseconds), then sleeps on its futex. The
// replier, or complete_locked() for every other outcome, moves it on.
Replies ChannelImpl::wait_box(const std::shared_ptr<Pending>& p) {
  auto& state = inbox_->box_state(uint32_t(p->box));
  const uint32_t waiting = box_word(p->gen, mailbox::box_waiting);
  const uint64_t spin_until = os::monotonic_ns() + kRequesterSpinNs;
  uint32_t s = state.load(std::memory_order_acquire);
  for (uint32_t step = 0; s == waiting; ++step) {
    const uint64_t now = os::monotonic_ns();
    if (now >= p->deadline_ns) {
      // Give up, unless the replier is writing right now.
      uint32_t expected = waiting;
      if (state.compare_exchange_strong(expected, box_word(p->gen, mailbox::box_done), std::memory_order_acquire)) {
        s = box_word(p->gen, mailbox::box_done);
        break;
      }
      s = expected;
      break;
    }
    if (now < spin_until) os::spin_pause(step);
    else os::futex_wait(&state, waiting, p->deadline_ns - now);
    s = state.load(std::memory_order_acquire);
  }
  // A replier that claimed the box finishes within a few microseconds unless it died.
  for (uint64_t give_up = os::monotonic_ns() + 1'000'000'000; s == box_word(p->gen, mailbox::box_writing);) {
    if (os::monotonic_ns() >= give_up) break;
    os::sleep_ns(10'000);
    s = state.load(std::memory_order_acquire);
  }
  if (s == box_word(p->gen, mailbox::box_ready)) {
    uint8_t copy[mailbox::kBoxData];
    const uint32_t len = std::min(inbox_->box_len(uint32_t(p->box)), mailbox::kBoxData);
    std::memcpy(copy, inbox_->box_data(uint32_t(p->box)), len);
    wire::DecodeError why;
    auto d = wire::decode({copy, len}, 0, &why);
    std::lock_guard g(mu_);
    if (!p->complete) {
      if (d && (d->type == wire::Type::reply || d->type == wire::Type::error_reply) && d->request_id == p->id) {
        Message msg;
        msg.from = d->sender;
        msg.name = d->name;
        msg.data.assign(d->payload.begin(), d->payload.end());
        received_.fetch_add(1, std::memory_order_relaxed);
        settle_reply_locked(*p, d->type, msg);
      } else {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        MPOD_LOG(ipc, warning, "dropped a malformed reply to '%s' in reply box %d of %s: %s", p->name.c_str(), p->box,
                 inbox_->path().c_str(), d ? "it answers another request" : why.reason.c_str());
      }
    }
  }
  std::lock_guard g(mu_);
  if (!p->complete) {
    for (auto& peer : p->waiting) {
      p->result.failures.push_back({peer, PeerError::timed_out, "no reply within the timeout"});
      failures_.fetch_add(1, std::memory_order_relaxed);
    }
    p->waiting.clear();
    p->complete = true;
    pending_.erase(p->id);
  }
  return std::move(p->result);
}

int ChannelImpl::acquire_box() {
  std::lock_guard g(boxes_mu_);
  if (free_boxes_.empty()) return -1;
  int b = free_boxes_.back();
  free_boxes_.pop_back();
  return b;
}

void ChannelImpl::release_box(int box) {
  // A box whose replier died while writing is never used again.
  const uint32_t phase = inbox_->box_state(uint32_t(box)).load(std::memory_order_acquire) & 3;
  if (phase == mailbox::box_writing) {
    MPOD_LOG(ipc, warning, "reply box %d of %s was left half-written by a dead replier; retiring it", box,
             inbox_->path().c_str());
    return;
  }
  std::lock_guard g(boxes_mu_);
  free_boxes_.push_back(box);
}

Replies ChannelImpl::request(const ProcessId& to, std::string_view name, std::span<const uint8_t> data,
                             Timeout timeout, std::span<const int> fds) {
  if (std::this_thread::get_id() == receiver_.get_id())
    throw Error(Errc::invalid_argument, "a synchronous request cannot be made from a channel handler; use request_async");
  const int box = acquire_box();
  if (box < 0) return wait_request(start_request({to}, name, data, fds, timeout, {}));
  struct Release {
    ChannelImpl* self;
    int box;
    ~Release() { self->release_box(box); }
  } release{this, box};
  return wait_box(start_request({to}, name, data, fds, timeout, {}, box));
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

// The receive thread polls its mailbox lanes and socket while messages keep
// coming, and for kReceiverSpinNs after the last one; then it raises the
// doorbell flag and sleeps in poll() until a datagram (a doorbell, a body, a
// message from a socket-only sender) or the stop event wakes it.
void ChannelImpl::receive_loop() {
  std::vector<uint8_t> buf(std::max<size_t>(wire::kMaxDatagram + 1, mailbox::kSlotData));
  uint64_t active_ns = os::monotonic_ns();
  uint32_t step = 0;
  while (!stopping_.load(std::memory_order_relaxed)) {
    size_t n = 0;
    try {
      n = drain_socket(buf.data()) + drain_lanes(buf.data());
    } catch (const Error& e) {
      MPOD_LOG(ipc, error, "%s", e.what());
    }
    const uint64_t now = os::monotonic_ns();
    if (n > 0 || now - last_housekeeping_ns_ > 1'000'000) housekeeping();
    if (n > 0) {
      active_ns = now;
      step = 0;
      continue;
    }
    if (now - active_ns < kReceiverSpinNs) {
      os::spin_pause(step++);
      continue;
    }
    int timeout_ms = 100;
    {
      std::lock_guard g(mu_);
      for (auto& [id, p] : pending_)
        if (p->done) timeout_ms = std::min<int>(timeout_ms, p->deadline_ns > now ? int((p->deadline_ns - now) / 1'000'000) + 1 : 0);
      if (!ready_.empty()) timeout_ms = 0;
    }
    if (!outbox_.empty()) timeout_ms = std::min(timeout_ms, 1);
    if (timeout_ms > 0 && inbox_->prepare_to_sleep()) {
      int ready = os::wait_readable(socket_.get(), stop_event_.get(), timeout_ms);
      inbox_->woke_up();
      if (ready & 2) os::drain_event(stop_event_.get());
    }
    active_ns = os::monotonic_ns();
    housekeeping();
  }
}

void ChannelImpl::housekeeping() {
  last_housekeeping_ns_ = os::monotonic_ns();
  flush_outbox();
  expire_requests();
  run_ready_callbacks();
  for (auto it = bodies_.begin(); it != bodies_.end();) {
    if (last_housekeeping_ns_ - it->second.arrived_ns < kBodyExpiryNs) {
      ++it;
      continue;
    }
    MPOD_LOG(ipc, warning, "dropped a message body whose marker never came (its sender died while sending)");
    for (int fd : it->second.fds) ::close(fd);
    it = bodies_.erase(it);
  }
}

size_t ChannelImpl::drain_socket(uint8_t* buf) {
  size_t n = 0;
  os::Received rx;
  while (os::recv_datagram(socket_.get(), buf, wire::kMaxDatagram + 1, &rx)) {
    handle_datagram(buf, rx);
    rx = {};
    ++n;
  }
  return n;
}

size_t ChannelImpl::drain_lanes(uint8_t* buf) {
  // Round robin, at most one lap of slots per lane per pass, so a busy sender cannot starve the others.
  size_t n = 0;
  for (uint32_t k = 0; k < mailbox::kLanes; ++k) {
    const int lane = int((lane_cursor_ + k) % mailbox::kLanes);
    for (uint32_t i = 0; i < mailbox::kSlots; ++i) {
      const int len = inbox_->pop(lane, buf);
      if (len < 0) break;
      ++n;
      handle_message({buf, size_t(len)}, {}, lane);
    }
  }
  lane_cursor_ = (lane_cursor_ + 1) % mailbox::kLanes;
  return n;
}

void ChannelImpl::handle_datagram(const uint8_t* buf, os::Received& rx) {
  std::vector<int> fds = std::move(rx.fds);
  auto drop = [&](const std::string& why) {
    for (int fd : fds) ::close(fd);
    dropped_.fetch_add(1, std::memory_order_relaxed);
    MPOD_LOG(ipc, warning, "dropped a datagram on %s: %s", socket_path_.c_str(), why.c_str());
  };
  if (rx.truncated) return drop("larger than the largest valid message, or too many descriptors");
  if (!rx.has_creds || !os::uid_is_trusted(rx.uid, rx.gid))
    return drop("sent by uid " + std::to_string(rx.uid) + " (gid " + std::to_string(rx.gid) + "), which is not this process's uid " +
                std::to_string(os::effective_uid()) +
                (os::has_shared_group() ? " nor a member of group " + std::to_string(os::shared_group()) : std::string(" (see --group)")));
  {
    // A marker's body waits for its marker; everything else is handled now.
    if (rx.len >= sizeof(wire::WireHeader)) {
      wire::WireHeader h;
      std::memcpy(&h, buf, sizeof h);
      if (h.magic == wire::kMagic && h.lane_token != 0 && h.type != uint8_t(wire::Type::marker)) {
        ProcessId sender;
        std::memcpy(sender.bytes.data(), h.sender, 16);
        auto key = std::make_pair(mailbox::owner_tag(sender), h.lane_token);
        auto& b = bodies_[key];
        for (int fd : b.fds) ::close(fd);  // a replayed token replaces the old body
        b = Body{std::vector<uint8_t>(buf, buf + rx.len), std::move(fds), os::monotonic_ns()};
        return;
      }
    }
  }
  handle_message({buf, rx.len}, std::move(fds), -1);
}

void ChannelImpl::handle_message(std::span<const uint8_t> bytes, std::vector<int> fds, int lane) {
  Message msg;
  msg.fds = std::move(fds);  // owned from here: closed if the message is dropped
  const char* where = lane >= 0 ? "mailbox" : "socket";
  auto drop = [&](const std::string& why) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    MPOD_LOG(ipc, warning, "dropped a message from the %s of %s: %s", where, socket_path_.c_str(), why.c_str());
  };
  wire::DecodeError why;
  auto d = wire::decode(bytes, msg.fds.size(), &why);
  if (!d) return drop(why.reason);
  if (d->type == wire::Type::doorbell) return;
  if (lane >= 0 && mailbox::owner_tag(d->sender) != inbox_->lane_owner(lane))
    return drop("lane " + std::to_string(lane) + " carries a message signed by " + d->sender.short_hex() +
                ", which does not own it");
  if (d->type == wire::Type::marker) {
    if (lane < 0) return drop("a marker arrived by socket");
    // Its body was sent before the marker was published, so it is queued by now.
    const auto key = std::make_pair(mailbox::owner_tag(d->sender), d->routing.lane_token);
    auto it = bodies_.find(key);
    if (it == bodies_.end()) {
      std::vector<uint8_t> buf(wire::kMaxDatagram + 1);
      drain_socket(buf.data());
      it = bodies_.find(key);
    }
    if (it == bodies_.end()) return drop("the body of marker " + std::to_string(d->routing.lane_token) + " from " +
                                         d->sender.short_hex() + " never arrived");
    Body body = std::move(it->second);
    bodies_.erase(it);
    wire::WireHeader h;
    std::memcpy(&h, body.bytes.data(), sizeof h);
    h.lane_token = 0;  // handled in its place now
    std::memcpy(body.bytes.data(), &h, sizeof h);
    return handle_message(body.bytes, std::move(body.fds), -1);
  }
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
    settle_reply_locked(*p, d.type, msg);
    return;
  }
  const bool is_request = d.type == wire::Type::request;
  const ProcessId from = msg.from;
  const uint64_t rid = d.request_id;
  const std::string name = msg.name;
  const wire::Routing box{d.routing.reply_box, d.routing.box_gen, 0};
  auto answer = [this, from, rid, name, box](wire::Type t, std::span<const uint8_t> data, std::span<const int> fds) {
    reply_or_queue(from, t, rid, name, data, fds, box);
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
                                 std::span<const int> fds, wire::Routing box) {
  if (box.reply_box > 0 && fds.empty()) {
    // Straight into the requester's reply box, waking the waiting thread itself.
    auto l = link_to(to);
    if (l->mailbox) {
      auto head = wire::encode_head(type, request_id, self_.id, name, data.size(), 0);
      const os::Part parts[2] = {{head.bytes, head.len}, {data.data(), data.size()}};
      if (l->mailbox->fill_box(box.reply_box - 1, box.box_gen, parts)) {
        sent_.fetch_add(1, std::memory_order_relaxed);
        lane_sent_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
  }
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
      if (e != PeerEvent::attached) {
        fail_peer_everywhere(p.id, std::string("the peer ") + peer_event_name(e));
        std::lock_guard g(links_mu_);
        links_.erase(p.id.hex());  // unmapped when the last send using it ends
      }
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
  s.sent_by_mailbox = lane_sent_.load();
  s.socket_path = socket_path_;
  s.mailbox_path = inbox_->path();
  {
    std::lock_guard g(peers_mu_);
    s.peers = peers_.size();
  }
  std::lock_guard g(mu_);
  s.pending_requests = pending_.size();
  return s;
}

}  // namespace mpod
