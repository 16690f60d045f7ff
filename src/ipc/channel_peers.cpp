// Channel: peers that attach, exit or die, as the PeerWatch reports them;
// subscriptions.
#include <algorithm>

#include "../runtime/registry.hpp"
#include "channel_impl.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod {

using namespace channel_detail;

void ChannelImpl::on_peer_event(const ProcessInfo& p, PeerEvent e) {
  if (p.id == self_.id) return;
  const std::string hex = p.id.hex();
  std::vector<PeerEventHandler> subs;
  bool reported = false;
  {
    std::lock_guard g(peers_mu_);
    if (e == PeerEvent::attached) {
      if (!peers_.emplace(hex, p).second) return;  // already known (from a snapshot that crossed it)
    } else {
      // Once tracking, every live peer is known: one that is not was reported
      // gone already (a member saw a dying watcher's connection end, and the
      // next watcher's sweep found it dead too).
      reported = peers_.erase(hex) == 0 && tracking_;
    }
    for (auto& [t, h] : subscribers_) subs.push_back(h);
  }
  if (e != PeerEvent::attached) {
    // No link to it is made or used from here on; then whatever waits on it
    // fails (a request registers before it sends, so one that sent on the
    // old link is failed here). Its mailbox is unmapped when the last send
    // using it ends.
    {
      std::lock_guard g(links_mu_);
      links_.erase(hex);
      if (gone_peers_.insert(hex).second) {
        gone_order_.push_back(hex);
        if (gone_order_.size() > kGonePeersKept) {
          gone_peers_.erase(gone_order_.front());
          gone_order_.pop_front();
        }
      }
    }
    fail_peer_everywhere(p.id, std::string("the peer ") + peer_event_name(e));
  }
  if (reported) return;
  MPOD_LOG(ipc, info, "peer %s %s (host %s, pid %d)", p.id.short_hex().c_str(), peer_event_name(e), p.hostname.c_str(),
           p.pid);
  for (auto& h : subs) {
    try {
      h(p, e);
    } catch (const std::exception& ex) {
      MPOD_LOG(ipc, warning, "a peer event subscriber threw: %s", ex.what());
    }
  }
}

std::vector<ProcessInfo> ChannelImpl::on_members(const std::vector<ProcessInfo>& list, bool initial) {
  std::map<std::string, ProcessInfo> now;
  for (auto& p : list)
    if (!(p.id == self_.id)) now.emplace(p.id.hex(), p);
  std::vector<ProcessInfo> left, came, unknown;
  {
    std::lock_guard g(peers_mu_);
    tracking_ = true;
    if (initial) {
      // The peers alive now are known without events; subscribers hear of changes.
      peers_ = std::move(now);
      return {};
    }
    for (auto& [hex, p] : peers_)
      if (!now.count(hex)) left.push_back(p);
    for (auto& [hex, p] : now)
      if (!peers_.count(hex)) came.push_back(p);
  }
  // A new watcher's view against ours: what changed while there was none.
  // One that left stays a peer until the watcher says how it went.
  for (auto& p : left) {
    std::optional<ProcessInfo> found;
    try {
      found = registry::find(domain_, p.id);
    } catch (const Error&) {
    }
    if (found && found->alive) continue;  // alive: it has not reached the new watcher yet
    unknown.push_back(p);
  }
  for (auto& p : came) on_peer_event(p, PeerEvent::attached);
  return unknown;
}

uint64_t ChannelImpl::subscribe(PeerEventHandler handler) {
  bool first = false;
  uint64_t token;
  {
    std::lock_guard g(peers_mu_);
    first = !tracking_;
    subscribers_.emplace(next_token_, std::move(handler));
    token = next_token_++;
  }
  // Arrivals are reported only to processes that asked: an attach storm then
  // wakes only those, not every process of the domain.
  if (first && !watch_->track())
    MPOD_LOG(ipc, warning, "the watcher did not send the list of peers within 10 s; attached events may be missed "
             "until it does");
  return token;
}

void ChannelImpl::unsubscribe(uint64_t token) {
  std::lock_guard g(peers_mu_);
  subscribers_.erase(token);
}

}  // namespace mpod
