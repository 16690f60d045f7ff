// Channel: the monitor thread: peers that attach, exit or die, within one period.
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

// ---- peers ----

void ChannelImpl::monitor_loop() {
  registry::Scanner registry_scan(domain_);
  while (!stopping_.load()) {
    // A period, or until the channel shuts down: a process's exit never
    // waits for the monitor's next scan (it did, up to 20 ms, before).
    os::wait_readable(monitor_stop_.get(), -1, int(kMonitorPeriodNs / 1'000'000));
    if (stopping_.load()) break;
    std::vector<std::pair<ProcessInfo, PeerEvent>> events;
    try {
      std::map<std::string, ProcessInfo> now;
      for (auto& p : registry_scan.scan())
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

}  // namespace mpod
