// Channel: the receive thread: lanes, socket, marker bodies, dispatch to handlers, replies.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "../runtime/registry.hpp"
#include "channel_impl.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod {

using namespace channel_detail;

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
    // Asleep until something arrives, unless something of ours is due: an
    // asynchronous request's deadline, a callback, a queued reply, a body's expiry.
    int timeout_ms = -1;
    auto until = [&](uint64_t due_ns) {
      const int ms = due_ns > now ? int(std::min<uint64_t>((due_ns - now) / 1'000'000 + 1, 60'000)) : 0;
      timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms);
    };
    {
      std::lock_guard g(mu_);
      for (auto& [id, p] : pending_)
        if (p->done) until(p->deadline_ns);
      if (!ready_.empty()) timeout_ms = 0;
    }
    if (!outbox_.empty()) until(now + 1'000'000);
    for (auto& [key, b] : bodies_) until(b.arrived_ns + kBodyExpiryNs);
    if (timeout_ms != 0 && inbox_->prepare_to_sleep()) {
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
    body_fds_ -= it->second.fds.size();
    --bodies_per_uid_[it->second.uid];
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
  // The lanes flagged ready, at most one lap of slots each (see Mailbox::drain).
  return inbox_->drain(lane_cursor_, buf,
                       [this](int lane, std::span<const uint8_t> bytes) { handle_message(bytes, {}, lane); });
}

bool ChannelImpl::sender_is(const ProcessId& id, uid_t uid) {
  if (id == self_.id) return uid == os::effective_uid();
  const std::string hex = id.hex();
  {
    std::lock_guard g(peers_mu_);
    if (auto it = peers_.find(hex); it != peers_.end()) return it->second.uid == uid;
  }
  // An id's uid never changes and ids are never reused, so what the registry
  // said once stays true: a process that is not tracked (nobody subscribed)
  // costs one registry read per sender, not one per datagram (doorbells included).
  if (auto it = sender_uids_.find(hex); it != sender_uids_.end()) return it->second == uid;
  if (auto p = registry::find(domain_, id)) {  // not tracked, or attached a moment ago
    if (sender_uids_.size() >= kMaxProcesses * 4) sender_uids_.clear();  // bounded: the dead are forgotten in bulk
    sender_uids_.emplace(hex, p->uid);
    return p->uid == uid;
  }
  // Not registered (it exited since it sent): only our own uid is taken at its word.
  return uid == os::effective_uid();
}

bool ChannelImpl::store_body(const ProcessId& sender, uid_t uid, uint64_t token, std::span<const uint8_t> bytes,
                             std::vector<int>& fds) {
  const auto key = std::make_pair(mailbox::owner_tag(sender), token);
  if (auto it = bodies_.find(key); it != bodies_.end()) {  // a replayed token replaces the old body
    for (int fd : it->second.fds) ::close(fd);
    body_fds_ -= it->second.fds.size();
    --bodies_per_uid_[it->second.uid];
    bodies_.erase(it);
  }
  if (bodies_.size() >= kMaxBodies || bodies_per_uid_[uid] >= kMaxBodiesPerUid || body_fds_ + fds.size() > kMaxBodyFds)
    return false;
  body_fds_ += fds.size();
  ++bodies_per_uid_[uid];
  bodies_.emplace(key, Body{std::vector<uint8_t>(bytes.begin(), bytes.end()), std::move(fds), os::monotonic_ns(), uid});
  fds.clear();
  return true;
}

void ChannelImpl::handle_datagram(const uint8_t* buf, os::Received& rx) {
  std::vector<int> fds = std::move(rx.fds);
  auto drop = [&](const std::string& why) {
    for (int fd : fds) ::close(fd);
    dropped_.fetch_add(1, std::memory_order_relaxed);
    MPOD_LOG(ipc, warning, "dropped a datagram on %s: %s", socket_path_.c_str(), why.c_str());
  };
  if (rx.truncated) return drop("larger than the largest valid message, or more than 8 descriptors");
  if (!rx.has_creds || !os::uid_is_trusted(rx.uid, rx.gid))
    return drop("sent by uid " + std::to_string(rx.uid) + " (gid " + std::to_string(rx.gid) + "), which is not this process's uid " +
                std::to_string(os::effective_uid()) +
                (os::has_shared_group() ? " nor a member of group " + std::to_string(os::shared_group()) : std::string(" (see --group)")));
  // Everything is decoded and checked before anything is kept or handled.
  wire::DecodeError why;
  auto d = wire::decode({buf, rx.len}, fds.size(), &why);
  if (!d) return drop(why.reason);
  if (!sender_is(d->sender, rx.uid))
    return drop("it claims to come from process " + d->sender.short_hex() + ", which is not a process of uid " +
                std::to_string(rx.uid) + " that sent it");
  if (d->type == wire::Type::doorbell) return;  // it only woke us
  if (d->type == wire::Type::marker) return drop("a marker arrived by socket");
  // A marker's body waits for its marker; everything else is handled now.
  if (d->routing.lane_token != 0) {
    if (!store_body(d->sender, rx.uid, d->routing.lane_token, {buf, rx.len}, fds))
      return drop("too many message bodies are waiting for their markers (uid " + std::to_string(rx.uid) + " has " +
                  std::to_string(bodies_per_uid_[rx.uid]) + ", all senders " + std::to_string(bodies_.size()) + ")");
    return;
  }
  handle_decoded(*d, std::move(fds), -1);  // decoded once: the payload still points into `buf`
}

void ChannelImpl::handle_message(std::span<const uint8_t> bytes, std::vector<int> fds, int lane) {
  wire::DecodeError why;
  auto d = wire::decode(bytes, fds.size(), &why);
  if (!d) {
    for (int fd : fds) ::close(fd);
    dropped_.fetch_add(1, std::memory_order_relaxed);
    MPOD_LOG(ipc, warning, "dropped a message from the %s of %s: %s", lane >= 0 ? "mailbox" : "socket",
             socket_path_.c_str(), why.reason.c_str());
    return;
  }
  handle_decoded(*d, std::move(fds), lane);
}

void ChannelImpl::handle_decoded(wire::Decoded& d, std::vector<int> fds, int lane) {
  Message msg;
  msg.fds = std::move(fds);  // owned from here: closed if the message is dropped
  const char* where = lane >= 0 ? "mailbox" : "socket";
  auto drop = [&](const std::string& why) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    MPOD_LOG(ipc, warning, "dropped a message from the %s of %s: %s", where, socket_path_.c_str(), why.c_str());
  };
  if (d.type == wire::Type::doorbell) return;
  if (lane >= 0 && mailbox::owner_tag(d.sender) != inbox_->lane_owner(lane))
    return drop("lane " + std::to_string(lane) + " carries a message signed by " + d.sender.short_hex() +
                ", which does not own it");
  if (d.type == wire::Type::marker) {
    if (lane < 0) return drop("a marker arrived by socket");
    // Its body was sent before the marker was published, so it is queued by now.
    const auto key = std::make_pair(mailbox::owner_tag(d.sender), d.routing.lane_token);
    auto it = bodies_.find(key);
    if (it == bodies_.end()) {
      std::vector<uint8_t> buf(wire::kMaxDatagram + 1);
      drain_socket(buf.data());
      it = bodies_.find(key);
    }
    if (it == bodies_.end()) return drop("the body of marker " + std::to_string(d.routing.lane_token) + " from " +
                                         d.sender.short_hex() + " never arrived");
    Body body = std::move(it->second);
    bodies_.erase(it);
    body_fds_ -= body.fds.size();
    --bodies_per_uid_[body.uid];
    wire::WireHeader h;
    std::memcpy(&h, body.bytes.data(), sizeof h);
    h.lane_token = 0;  // handled in its place now
    std::memcpy(body.bytes.data(), &h, sizeof h);
    return handle_message(body.bytes, std::move(body.fds), -1);
  }
  received_.fetch_add(1, std::memory_order_relaxed);
  msg.from = d.sender;
  msg.name = d.name;
  msg.data.assign(d.payload.begin(), d.payload.end());
  dispatch(d, std::move(msg));
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
    if (l && l->mailbox) {
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

}  // namespace mpod
