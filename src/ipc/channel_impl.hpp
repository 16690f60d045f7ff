// The Channel implementation: a mailbox (the shared-memory fast path) and a
// datagram socket per process, a receive thread that runs handlers and
// completes requests, and a PeerWatch that hears, from the kernel, of
// processes that attach, exit or die. docs/channel.md explains the paths.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "../os/dir.hpp"
#include "../os/os.hpp"
#include "mpod/channel.hpp"
#include "mailbox.hpp"
#include "peer_watch.hpp"
#include "wire.hpp"

namespace mpod {

class ChannelImpl final : public Channel {
 public:
  // Binds this process's socket, starts the receive thread and joins the
  // domain's watch (peer_watch.hpp). `mode`: socket permissions.
  // `watch_lock`: the watch lock if this process already holds it (the
  // primary), else empty. `reaping`: the watcher's reap and sweep hooks (the
  // runtime's; the event hooks are the channel's own). Throws busy if the
  // watcher refuses this process.
  ChannelImpl(std::string domain_dir, ProcessInfo self, mode_t mode, os::Fd watch_lock, PeerWatch::Hooks reaping);
  ~ChannelImpl();

  static std::string socket_dir(const std::string& domain_dir) { return domain_dir + "/mp"; }
  static std::string socket_path(const std::string& domain_dir, const ProcessId& id);
  static std::string mailbox_path(const std::string& domain_dir, const ProcessId& id);
  static std::string socket_name(const ProcessId& id) { return id.hex() + ".sock"; }
  static std::string mailbox_name(const ProcessId& id) { return id.hex() + ".mbox"; }
  // Removes the sockets and mailbox a dead process left behind.
  static void remove_endpoint(const std::string& domain_dir, const ProcessId& id) noexcept;
  // Removes from mp/ every socket and mailbox whose process has no
  // registration (a reaper killed between removing the registration and
  // them, a process that exited unable to remove its own), and private bind
  // directories older than a minute (a process killed while binding). Call
  // after reaping the registry: a process registers before it makes its
  // endpoints and removes them before it unregisters, so an endpoint without
  // a registration has nobody. Returns how many entries it removed.
  static size_t remove_orphan_endpoints(const std::string& domain_dir) noexcept;

  void register_action(std::string_view name, Handler handler) override;
  void unregister_action(std::string_view name) override;
  void send(const ProcessId& to, std::string_view name, std::span<const uint8_t> data,
            std::span<const int> fds, Timeout timeout) override;
  std::vector<PeerFailure> send_all(std::string_view name, std::span<const uint8_t> data,
                                    std::span<const int> fds, Timeout timeout) override;
  Replies request(const ProcessId& to, std::string_view name, std::span<const uint8_t> data,
                  Timeout timeout, std::span<const int> fds) override;
  Replies request_all(std::string_view name, std::span<const uint8_t> data, Timeout timeout,
                      std::span<const int> fds) override;
  void request_async(const ProcessId& to, std::string_view name, std::span<const uint8_t> data,
                     Timeout timeout, std::function<void(Replies)> done) override;
  void request_all_async(std::string_view name, std::span<const uint8_t> data, Timeout timeout,
                         std::function<void(Replies)> done) override;
  uint64_t subscribe(PeerEventHandler handler) override;
  void unsubscribe(uint64_t token) override;
  Stats stats() const override;

  // How long the receive thread keeps polling after its last message, and a
  // synchronous requester polls its reply box, before each sleeps.
  static constexpr uint64_t kReceiverSpinNs = 50'000;
  static constexpr uint64_t kRequesterSpinNs = 50'000;

 private:
  struct Pending;
  struct PeerLink;
  enum class Delivery { ok, dead, full };

  // Sends one message to `to`: through our lane in its mailbox when we have
  // one (by marker and socket when it does not fit a slot), else by socket.
  // deadline_ns 0: never wait (the receive thread's replies).
  Delivery deliver(const ProcessId& to, wire::Type type, uint64_t request_id, std::string_view name,
                   std::span<const uint8_t> data, std::span<const int> fds, uint64_t deadline_ns,
                   wire::Routing routing = {});
  // Sends by socket to the node `link` holds, refreshing the link while the peer is not bound yet.
  Delivery socket_send(std::shared_ptr<PeerLink> link, const os::Part* parts, size_t nparts,
                       std::span<const int> fds, uint64_t deadline_ns);
  Delivery wait_for_room(PeerLink& link, uint64_t deadline_ns);
  void ring_doorbell(PeerLink& link);
  // The link to `to`, made on first use; null if `to` is not alive. A link
  // made before the peer bound its socket is not kept (its mailbox may not
  // exist yet). At most link_cap_ links are kept: the least recently used
  // one nobody is using is closed to make room, so a process's descriptors
  // do not grow with its peers.
  std::shared_ptr<PeerLink> link_to(const ProcessId& to);
  // The lane owner tags of every live process.
  std::set<uint64_t> live_tags() const;
  std::vector<ProcessId> live_peers() const;
  std::shared_ptr<Pending> start_request(const std::vector<ProcessId>& to, std::string_view name,
                                         std::span<const uint8_t> data, std::span<const int> fds,
                                         Timeout timeout, std::function<void(Replies)> done, int box = -1);
  Replies wait_request(const std::shared_ptr<Pending>& p);
  Replies wait_box(const std::shared_ptr<Pending>& p);
  int acquire_box();
  void release_box(int box);
  // Settles `p` from a decoded reply or error reply of `from`. Caller holds mu_.
  void settle_reply_locked(Pending& p, wire::Type type, Message& msg);
  // Records that `peer` answered or failed; completes the request when nobody is left. Caller holds mu_.
  void settle_locked(Pending& p, const ProcessId& peer, Message* reply, const PeerFailure* failure);
  void complete_locked(Pending& p);
  void fail_peer_everywhere(const ProcessId& peer, const std::string& why);

  void receive_loop();
  size_t drain_socket(uint8_t* buf);
  size_t drain_lanes(uint8_t* buf);
  void handle_datagram(const uint8_t* buf, os::Received& rx);
  // Whether `id` is a process of `uid`: the uid its registration belongs to.
  // Only the kernel's credentials of a datagram are evidence; the id in a
  // header is a claim, which this holds against the registry.
  bool sender_is(const ProcessId& id, uid_t uid);
  // Keeps a marker's body until its marker comes, within the caps below; false if it is refused.
  bool store_body(const ProcessId& sender, uid_t uid, uint64_t token, std::span<const uint8_t> bytes,
                  std::vector<int>& fds);
  // Decodes and dispatches one message; `lane` >= 0 when it came from a lane.
  void handle_message(std::span<const uint8_t> bytes, std::vector<int> fds, int lane);
  // The same for a message already decoded (its payload points into the caller's bytes).
  void handle_decoded(wire::Decoded& d, std::vector<int> fds, int lane);
  void dispatch(wire::Decoded& d, Message msg);
  void housekeeping();
  void expire_requests();
  void run_ready_callbacks();
  // PeerWatch hooks, on its thread.
  void on_peer_event(const ProcessInfo& p, PeerEvent e);
  std::vector<ProcessInfo> on_members(const std::vector<ProcessInfo>& list, bool initial);
  // Replies from the receive thread never wait on a full peer: what cannot
  // go out at once waits here and is retried between receives (two receive
  // threads blocked sending to each other would otherwise stall both).
  void reply_or_queue(const ProcessId& to, wire::Type type, uint64_t request_id, const std::string& name,
                      std::span<const uint8_t> data, std::span<const int> fds, wire::Routing box);
  void flush_outbox();
  struct Outgoing {
    ProcessId to;
    wire::Type type;
    uint64_t request_id;
    std::string name;
    std::vector<uint8_t> data;
    std::vector<os::Fd> fds;  // duplicates, owned until sent
    uint64_t deadline_ns;
  };
  std::deque<Outgoing> outbox_;  // receive thread only

  const std::string domain_;
  const ProcessInfo self_;
  const std::string socket_path_;
  os::Dir mp_;  // <domain>/mp, checked: sockets and mailboxes are reached only through it
  mailbox::MailboxPtr inbox_;
  os::Fd socket_;
  os::Fd stop_event_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mu_;  // pending_, ready_, next_id_
  std::condition_variable cv_;
  std::map<uint64_t, std::shared_ptr<Pending>> pending_;
  std::vector<std::pair<std::function<void(Replies)>, Replies>> ready_;
  uint64_t next_id_ = 1;

  // Bodies of lane markers that arrived by socket, until their marker is reached.
  struct Body {
    std::vector<uint8_t> bytes;
    std::vector<int> fds;  // owned
    uint64_t arrived_ns;
    uid_t uid;             // who sent it, as the kernel said
  };
  // Bodies wait at most kBodyExpiryNs; a flood of bodies whose markers never
  // come (a hostile member) is held to these, so it cannot exhaust our descriptors.
  static constexpr size_t kMaxBodiesPerUid = 32;
  static constexpr size_t kMaxBodies = 128;
  static constexpr size_t kMaxBodyFds = 256;
  size_t body_fds_ = 0;                       // descriptors held in bodies_; receive thread only
  std::map<uid_t, size_t> bodies_per_uid_;    // receive thread only
  std::map<std::pair<uint64_t, uint64_t>, Body> bodies_;  // (sender tag, token); receive thread only
  uint32_t lane_cursor_ = 0;                              // receive thread only
  std::map<std::string, uid_t> sender_uids_;              // id hex -> uid, as the registry said; receive thread only
  uint64_t last_housekeeping_ns_ = 0;

  std::mutex boxes_mu_;
  std::vector<int> free_boxes_;
  uint32_t box_gen_[mailbox::kBoxes] = {};

  mutable std::mutex links_mu_;
  std::map<std::string, std::shared_ptr<PeerLink>> links_;  // by id hex
  size_t link_cap_ = 64;
  uint64_t link_clock_ = 0;  // under links_mu_: stamps each link's last use
  // Under links_mu_: the last peers reported gone (ids are never reused). A
  // link made while its peer's departure was being reported is never kept:
  // later requests would go to a mailbox nobody reads, with no event left
  // to fail them.
  static constexpr size_t kGonePeersKept = 4096;
  std::set<std::string> gone_peers_;
  std::deque<std::string> gone_order_;

  mutable std::mutex handlers_mu_;
  std::map<std::string, Handler, std::less<>> handlers_;

  mutable std::mutex peers_mu_;  // peers_, subscribers_, tracking_
  // By id hex: the live peers, as the watch reported them. Complete only
  // while tracking_ (a subscriber asked, or this process is the watcher):
  // otherwise only departures are reported, and the registry is asked.
  std::map<std::string, ProcessInfo> peers_;
  bool tracking_ = false;
  std::map<uint64_t, PeerEventHandler> subscribers_;
  uint64_t next_token_ = 1;

  std::atomic<uint64_t> lane_sent_{0};  // of sent_: by mailbox lane or reply box
  std::atomic<uint64_t> sent_{0}, received_{0}, dropped_{0}, requests_{0}, replies_{0}, failures_{0};
  std::thread receiver_;
  std::unique_ptr<PeerWatch> watch_;  // last: its hooks use everything above
  std::atomic<PeerWatch*> link_watch_{nullptr};  // watch_, for link_to on any thread once it exists
};

// A request in flight.
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
  std::string socket_path;      // for messages
  os::Fd socket;                // connected to its socket, checked to be its uid's; empty until it is bound
  mailbox::MailboxPtr mailbox;  // null: it has none we may open
  int lane = -1;                // ours in its mailbox; -1: socket only
  std::mutex send_mu;           // our threads take turns on the lane, so it has one producer
  uint64_t next_token = 1;      // for markers; under send_mu
  uint64_t last_used = 0;       // under links_mu_
};

namespace channel_detail {
constexpr uint64_t kBodyExpiryNs = 30'000'000'000;  // a marker body whose marker never came (sender died)

inline uint64_t deadline_after(Channel::Timeout t) {
  return os::monotonic_ns() + static_cast<uint64_t>(std::max<int64_t>(t.count(), 0)) * 1'000'000ull;
}

// Error replies carry the PeerError code in their first byte, then a text.
inline std::vector<uint8_t> error_payload(PeerError e, const std::string& text) {
  std::vector<uint8_t> out(1 + text.size());
  out[0] = static_cast<uint8_t>(e);
  std::memcpy(out.data() + 1, text.data(), text.size());
  return out;
}

inline uint32_t box_word(uint32_t gen, mailbox::BoxPhase phase) { return (gen << 2) | phase; }
}  // namespace channel_detail

}  // namespace mpod
