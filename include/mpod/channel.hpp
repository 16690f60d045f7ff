// mpod::Channel — the multi-process channel (DPDK's rte_mp).
//
// Every process binds <runtime-dir>/<prefix>/mp/<id>.sock and creates the
// mailbox <id>.mbox beside it, both named by its unique id, never its PID, so
// it works across PID, mount, UTS, IPC and network namespaces whenever the
// runtime directory is shared. Small messages go through the mailbox (shared
// memory, no system call when the receiver is awake); descriptors and large
// payloads through the socket; one sender's messages to one receiver arrive
// in the order sent either way. Messages are
// named actions with a byte payload (up to kMaxPayload) and up to kMaxFds
// file descriptors. Peers are the live processes of the registry: a dead peer
// is reported at once, never waited on. Only processes of the same uid are
// heard; malformed datagrams are dropped with a log line.
//
// Threads: handlers and async completions run on the channel's receive
// thread, one at a time. A handler must not make a synchronous request (the
// replies it waits for would be read by the thread it blocks).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mpod/process.hpp"

namespace mpod {

// A message as received. Owns the descriptors it carries: they are closed
// with it unless taken with release_fds().
class Message {
 public:
  Message() = default;
  Message(Message&&) noexcept;
  Message& operator=(Message&&) noexcept;
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;
  ~Message();

  ProcessId from;
  std::string name;
  std::vector<uint8_t> data;
  std::vector<int> fds;

  std::vector<int> release_fds() noexcept;
  std::string_view text() const noexcept {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
  }
};

// Why a peer gave no reply.
enum class PeerError {
  dead,            // not alive when sent, or died before answering
  timed_out,       // alive, but no reply before the deadline
  no_handler,      // it has no handler for the action
  handler_failed,  // its handler threw; detail has the message
  send_failed,     // its socket queue stayed full until the deadline
};
const char* peer_error_name(PeerError e) noexcept;

struct PeerFailure {
  ProcessId peer;
  PeerError error;
  std::string detail;
};

struct Replies {
  std::vector<Message> replies;      // one per peer that answered
  std::vector<PeerFailure> failures;  // one per peer that did not
};

// What a handler receives. For a request, reply() answers it (at most once;
// a second call throws). For a one-way message, reply() throws.
class Incoming {
 public:
  virtual const Message& message() const noexcept = 0;
  virtual Message& message() noexcept = 0;
  virtual bool is_request() const noexcept = 0;
  virtual void reply(std::span<const uint8_t> data, std::span<const int> fds = {}) = 0;
  void reply(std::string_view text) {
    reply(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  }

 protected:
  ~Incoming() = default;
};

using Handler = std::function<void(Incoming&)>;

enum class PeerEvent { attached, exited, crashed };
const char* peer_event_name(PeerEvent e) noexcept;
using PeerEventHandler = std::function<void(const ProcessInfo&, PeerEvent)>;

inline std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class Channel {
 public:
  static constexpr size_t kMaxPayload = 64 * 1024;
  static constexpr size_t kMaxFds = 8;
  using Timeout = std::chrono::milliseconds;

  // Registers the handler of `name` (1..63 of [A-Za-z0-9_.:-]); throws
  // already_exists if it has one. Unregistering an unknown name is a no-op.
  virtual void register_action(std::string_view name, Handler handler) = 0;
  virtual void unregister_action(std::string_view name) = 0;

  // One-way message to one peer. Throws not_found if the peer is not alive,
  // no_memory if its queue stays full for `timeout`, invalid_argument for a
  // bad name, payload or descriptor count. Descriptors are borrowed (duplicated by the kernel).
  virtual void send(const ProcessId& to, std::string_view name, std::span<const uint8_t> data,
                    std::span<const int> fds = {}, Timeout timeout = Timeout(1000)) = 0;
  // To every other live process; returns the peers it could not reach.
  virtual std::vector<PeerFailure> send_all(std::string_view name, std::span<const uint8_t> data,
                                            std::span<const int> fds = {}, Timeout timeout = Timeout(1000)) = 0;

  // Synchronous request to one peer / every other live process. Returns
  // when every peer has answered or failed; never waits past `timeout`.
  virtual Replies request(const ProcessId& to, std::string_view name, std::span<const uint8_t> data,
                          Timeout timeout, std::span<const int> fds = {}) = 0;
  virtual Replies request_all(std::string_view name, std::span<const uint8_t> data, Timeout timeout,
                              std::span<const int> fds = {}) = 0;
  // Asynchronous: `done` runs once, on the receive thread, with the same result.
  virtual void request_async(const ProcessId& to, std::string_view name, std::span<const uint8_t> data,
                             Timeout timeout, std::function<void(Replies)> done) = 0;
  virtual void request_all_async(std::string_view name, std::span<const uint8_t> data, Timeout timeout,
                                 std::function<void(Replies)> done) = 0;

  // Calls `handler` (on the monitor thread) when a process attaches, exits
  // cleanly, or dies; within 100 ms. Returns a token for unsubscribe().
  virtual uint64_t subscribe(PeerEventHandler handler) = 0;
  virtual void unsubscribe(uint64_t token) = 0;

  struct Stats {
    uint64_t sent = 0, received = 0, dropped = 0, requests = 0, replies = 0, failures = 0;
    uint64_t sent_by_mailbox = 0;  // of `sent`: written into the peer's mailbox (the fast path)
    size_t peers = 0;           // live peers known to the monitor
    size_t pending_requests = 0;
    std::string socket_path;
    std::string mailbox_path;
  };
  virtual Stats stats() const = 0;

 protected:
  ~Channel() = default;
};

}  // namespace mpod
