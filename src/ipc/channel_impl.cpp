// Channel: endpoints, start and shutdown, handlers, subscriptions, statistics.
// Sending, requests, receiving and peer events are in channel_*.cpp beside it.
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

std::string ChannelImpl::socket_path(const std::string& domain, const ProcessId& id) {
  return socket_dir(domain) + "/" + id.hex() + ".sock";
}

std::string ChannelImpl::mailbox_path(const std::string& domain, const ProcessId& id) {
  return socket_dir(domain) + "/" + id.hex() + ".mbox";
}

namespace {
constexpr double kStaleBindSeconds = 60;  // a bind takes microseconds; older private dirs are a dead binder's

// The process id an endpoint name belongs to: "<id>.sock", "<id>.mbox", "<id>.watch".
std::optional<ProcessId> endpoint_owner(std::string_view name) {
  const auto dot = name.find('.');
  if (dot == std::string::npos) return std::nullopt;
  const std::string_view ext = name.substr(dot);
  if (ext != ".sock" && ext != ".mbox" && ext != ".watch") return std::nullopt;
  return ProcessId::parse(name.substr(0, dot));
}

// Whose socket a binder's private directory ".bind-<endpoint>-<random>" was
// for; nullopt for one named otherwise (made by an older mpod).
std::optional<ProcessId> bind_dir_owner(std::string_view name) {
  if (!name.starts_with(os::kBindDirPrefix)) return std::nullopt;
  name.remove_prefix(os::kBindDirPrefix.size());
  const auto dash = name.rfind('-');
  if (dash == std::string_view::npos) return std::nullopt;
  return endpoint_owner(name.substr(0, dash));
}

// Removes a binder's private directory and the socket that may be in it.
bool remove_bind_dir(const os::Dir& mp, const std::string& name) {
  if (auto d = mp.try_open_subdir(name, os::DirRule::owned_by(os::effective_uid()))) d->remove("s");
  return mp.remove_dir(name);
}
}  // namespace

void ChannelImpl::remove_endpoint(const std::string& domain, const ProcessId& id) noexcept {
  try {
    const os::Dir mp = registry::open_domain_subdir(domain, "mp");
    for (const auto& name : {socket_name(id), mailbox_name(id), PeerWatch::socket_name(id)}) {
      try {
        mp.remove(name);
      } catch (const Error& e) {
        MPOD_LOG(ipc, warning, "%s", e.what());
      }
    }
    // What a bind it was killed inside left.
    for (const std::string& name : mp.list()) {
      try {
        if (auto owner = bind_dir_owner(name); owner && *owner == id) remove_bind_dir(mp, name);
      } catch (const Error& e) {
        MPOD_LOG(ipc, warning, "%s", e.what());
      }
    }
  } catch (const Error& e) {
    MPOD_LOG(ipc, warning, "%s", e.what());
  }
}

size_t ChannelImpl::remove_orphan_endpoints(const std::string& domain) noexcept {
  size_t removed = 0;
  try {
    const os::Dir mp = registry::open_domain_subdir(domain, "mp");
    const os::Dir procs = registry::open_procs(domain);
    // mp/ is listed before the registry is read: an endpoint seen here was
    // made after its registration, so a registration missing now is gone.
    for (const std::string& name : mp.list()) {
      try {
        if (name.starts_with(os::kBindDirPrefix)) {
          // A bind comes after its process registered: its owner unregistered
          // means a dead binder. One of unknown owner goes once surely stale.
          const auto owner = bind_dir_owner(name);
          if (owner ? procs.stat(owner->hex()).has_value() : mp.age_seconds(name) < kStaleBindSeconds) continue;
          removed += remove_bind_dir(mp, name);
          continue;
        }
        const auto id = endpoint_owner(name);
        if (!id || procs.stat(id->hex())) continue;
        if (mp.remove(name)) {
          ++removed;
          MPOD_LOG(ipc, notice, "removed %s: its process %s is no longer registered", mp.path_of(name).c_str(),
                   id->short_hex().c_str());
        }
      } catch (const Error& e) {
        MPOD_LOG(ipc, info, "sweeping %s: %s", mp.path_of(name).c_str(), e.what());
      }
    }
  } catch (const Error& e) {
    MPOD_LOG(ipc, info, "sweeping the channel directory of %s: %s", domain.c_str(), e.what());
  }
  return removed;
}

ChannelImpl::ChannelImpl(std::string domain_dir, ProcessInfo self, mode_t mode, os::Fd watch_lock,
                         PeerWatch::Hooks reaping)
    : domain_(std::move(domain_dir)),
      self_(std::move(self)),
      socket_path_(socket_path(domain_, self_.id)),
      mp_(registry::open_domain_subdir(domain_, "mp")) {
  // The mailbox exists before the socket: a peer that finds our socket finds our mailbox.
  inbox_ = mailbox::Mailbox::create(mp_, mailbox_name(self_.id));
  socket_ = os::bind_datagram_socket(mp_, socket_name(self_.id), mode);
  stop_event_ = os::make_event();
  for (int b = int(mailbox::kBoxes) - 1; b >= 0; --b) free_boxes_.push_back(b);
  // Room for the largest domain's connections (the watcher's) and more, as far as the hard limit allows.
  os::raise_descriptor_limit(65536);
  // Links keep a descriptor each: a small share of what the process may
  // open, and within what the watcher keeps free. (Set before the receive
  // thread starts: it makes links too.)
  link_cap_ = std::clamp<size_t>(size_t(os::descriptor_limit()) / 16, 2, 64);
  receiver_ = std::thread([this] { receive_loop(); });
  PeerWatch::Hooks hooks = std::move(reaping);
  hooks.event = [this](const ProcessInfo& p, PeerEvent e) { on_peer_event(p, e); };
  hooks.members = [this](const std::vector<ProcessInfo>& list, bool initial) { return on_members(list, initial); };
  PeerWatch::Limits limits;
  limits.reserve_fds = int(link_cap_) + 2;  // and two for files opened for a moment (a registration read)
  try {
    watch_ = std::make_unique<PeerWatch>(domain_, mp_, self_, std::move(watch_lock), std::move(hooks), limits,
                                         PeerWatch::kAdmitTimeoutNs);
  } catch (...) {
    stopping_.store(true);
    os::signal_event(stop_event_.get());
    receiver_.join();
    socket_.reset();
    remove_endpoint(domain_, self_.id);
    throw;
  }
  // Links made by the receive thread before the watch existed (a reply to an
  // early request) are named to it now; later ones as they are made.
  link_watch_.store(watch_.get());
  std::lock_guard g(links_mu_);
  for (auto& [hex, l] : links_) watch_->watch_peer(l->id);
}

ChannelImpl::~ChannelImpl() {
  link_watch_.store(nullptr);
  watch_.reset();  // bye: the others see an exit, not a crash
  stopping_.store(true);
  os::signal_event(stop_event_.get());
  if (receiver_.joinable()) receiver_.join();
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
      // A lane still holding our last messages (a reply sent just before
      // exiting) stays ours, so the receiver still finds them signed by its
      // owner; the next sender takes it over once we are dead.
      if (l->mailbox && l->lane >= 0 && !l->mailbox->lane_has_data(l->lane)) l->mailbox->release_lane(l->lane, self_.id);
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
  bool tracking;
  {
    std::lock_guard g(peers_mu_);
    tracking = tracking_;
    s.peers = peers_.size();
  }
  if (!tracking) s.peers = live_peers().size();  // only departures are reported to this process
  std::lock_guard g(mu_);
  s.pending_requests = pending_.size();
  return s;
}

}  // namespace mpod
