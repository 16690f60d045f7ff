// Channel: links to peers (mailbox lane or socket), delivery, one-way messages.
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

// ---- sending ----

std::set<uint64_t> ChannelImpl::live_tags() const {
  // The registry decides, not only the peers the watch told us of: a lane
  // is taken over only from an owner found dead, never from one merely unknown.
  std::set<uint64_t> out;
  for (auto& p : registry::list(domain_))
    if (p.alive) out.insert(mailbox::owner_tag(p.id));
  return out;
}

std::shared_ptr<ChannelImpl::PeerLink> ChannelImpl::link_to(const ProcessId& to) {
  const std::string hex = to.hex();
  {
    std::lock_guard g(links_mu_);
    if (auto it = links_.find(hex); it != links_.end()) {
      it->second->last_used = ++link_clock_;
      return it->second;
    }
  }
  // Its registration says whether it lives, and which uid it runs as; its socket must be that uid's.
  const auto info = registry::find(domain_, to);
  if (!info || !info->alive) return nullptr;
  auto l = std::make_shared<PeerLink>();
  l->id = to;
  l->socket_path = socket_path(domain_, to);
  try {
    l->mailbox = mailbox::Mailbox::open(mp_, mailbox_name(to));
  } catch (const Error& e) {
    MPOD_LOG(ipc, warning, "%s; messages to it go by socket", e.what());
  }
  try {
    l->socket = os::connect_datagram_socket(mp_, socket_name(to), info->uid);
  } catch (const Error& e) {
    MPOD_LOG(ipc, warning, "%s", e.what());
  }
  if (!l->socket) return l;  // not bound yet: decide again next time
  if (l->mailbox) {
    // Our lane in its mailbox outlives the link: a link made again finds it ours.
    // Asked only when every lane is held: one pass over the registry for all of them.
    std::optional<std::set<uint64_t>> live;
    l->lane = l->mailbox->claim_lane(self_.id, [&](uint64_t tag) {
      if (!live) live = live_tags();
      return !live->count(tag);
    });
    if (l->lane < 0)
      MPOD_LOG(ipc, info, "every lane of %s is taken by a live sender; messages to it go by socket",
               l->mailbox->path().c_str());
    else if (!l->mailbox->back_lane(l->lane)) {
      // No room for the lane's pages: the socket needs none.
      MPOD_LOG(ipc, notice, "no room to back a lane in %s (its filesystem is full?); messages to it go by socket",
               l->mailbox->path().c_str());
      l->mailbox->release_lane(l->lane, self_.id);
      l->lane = -1;
    }
  }
  std::vector<std::shared_ptr<PeerLink>> closed;  // closed outside the lock
  std::lock_guard g(links_mu_);
  if (gone_peers_.count(hex)) {  // reported gone since its registration was read
    if (l->lane >= 0) l->mailbox->release_lane(l->lane, self_.id);
    return nullptr;
  }
  auto [it, fresh] = links_.emplace(hex, l);
  it->second->last_used = ++link_clock_;
  // Its death must reach us (a request to it fails then), whether or not we
  // track everyone. Named here, under links_mu_, after the link is in place:
  // the constructor names every link already made once the watch exists,
  // under the same lock, so each link is named by one or the other. (Named
  // before the link was stored, a link the receive thread made while the
  // constructor ran could be named by neither: requests to that peer then
  // outlived its death, up to their timeout.)
  if (fresh)
    if (PeerWatch* w = link_watch_.load()) w->watch_peer(to);
  if (!fresh) {  // another thread made it meanwhile: one link, one lane
    if (l->lane >= 0 && it->second->lane != l->lane) l->mailbox->release_lane(l->lane, self_.id);
    return it->second;
  }
  while (links_.size() > link_cap_) {
    // The least recently used link nobody is sending on.
    auto victim = links_.end();
    for (auto j = links_.begin(); j != links_.end(); ++j)
      if (j->second.use_count() == 1 && (victim == links_.end() || j->second->last_used < victim->second->last_used))
        victim = j;
    if (victim == links_.end()) break;
    closed.push_back(std::move(victim->second));
    links_.erase(victim);
  }
  return it->second;
}

ChannelImpl::Delivery ChannelImpl::socket_send(std::shared_ptr<PeerLink> l, const os::Part* parts, size_t nparts,
                                               std::span<const int> fds, uint64_t deadline_ns) {
  const ProcessId to = l->id;
  for (;;) {
    const auto status = !l->socket ? os::SendStatus::peer_gone
                                   : os::send_datagram(l->socket.get(), "", parts, nparts, fds.data(), fds.size());
    switch (status) {
      case os::SendStatus::ok:
        return Delivery::ok;
      case os::SendStatus::peer_gone:
        // Nobody bound there: dead, unless it registered a moment ago and binds next.
        if (deadline_ns == 0 || !registry::is_alive(domain_, to) || os::monotonic_ns() >= deadline_ns)
          return Delivery::dead;
        os::sleep_ns(200'000);
        if (!l->socket) {
          l = link_to(to);
          if (!l) return Delivery::dead;
        }
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
  if (!l.socket || !l.mailbox->take_doorbell()) return;
  auto head = wire::encode_head(wire::Type::doorbell, 0, self_.id, "", 0, 0);
  const os::Part part{head.bytes, head.len};
  // A full queue needs no doorbell: the receiver wakes for what is queued.
  os::send_datagram(l.socket.get(), "", &part, 1, nullptr, 0);
}

ChannelImpl::Delivery ChannelImpl::deliver(const ProcessId& to, wire::Type type, uint64_t request_id,
                                           std::string_view name, std::span<const uint8_t> data,
                                           std::span<const int> fds, uint64_t deadline_ns, wire::Routing routing) {
  auto l = link_to(to);
  if (!l) return Delivery::dead;
  if (l->lane < 0) {
    auto head = wire::encode_head(type, request_id, self_.id, name, data.size(), fds.size(), routing);
    const os::Part parts[2] = {{head.bytes, head.len}, {data.data(), data.size()}};
    Delivery d = socket_send(l, parts, 2, fds, deadline_ns);
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
    d = socket_send(l, parts, 2, fds, deadline_ns);
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
  wire::validate_message(name, data.size(), fds.size());  // refused alike with or without peers
  std::vector<PeerFailure> failed;
  const uint64_t deadline = deadline_after(timeout);
  for (auto& peer : live_peers()) {
    auto r = deliver(peer, wire::Type::message, 0, name, data, fds, deadline);
    if (r == Delivery::dead) failed.push_back({peer, PeerError::dead, "not alive"});
    if (r == Delivery::full) failed.push_back({peer, PeerError::send_failed, "socket queue full"});
  }
  return failed;
}

}  // namespace mpod
