// The shared control block of client_server_mp, in memzone "MProc_control",
// and the names of everything the server creates. The server (primary)
// creates the pool and the rings first and the control block last, marking it
// ready with `magic`; a client that finds the block ready finds the rest.
//
// Protocol:
//   client: claims its slot (free -> claiming -> attached), then dequeues
//           until `finish` is set and its ring is empty, gives its cached
//           buffers back, and sets its slot to done (or left, if stopped early).
//   server: waits until every client is attached, generates, sets `finish`,
//           waits for every client to be done, then prints the summary.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace csmp {

inline constexpr const char* kPoolName = "MProc_pktmbuf_pool";  // as in DPDK's example
inline constexpr const char* kControlName = "MProc_control";
inline std::string ring_name(uint32_t client) { return "MProc_Client_" + std::to_string(client); }

constexpr uint32_t kMaxClients = 32;
constexpr uint32_t kControlMagic = 0x43534d50;  // "CSMP"
constexpr uint32_t kControlVersion = 2;

enum SlotState : uint32_t {
  kFree = 0,      // no client has this id yet
  kClaiming = 1,  // a client is writing who it is
  kAttached = 2,  // receiving
  kDone = 3,      // finished normally: its ring was drained after `finish`
  kLeft = 4,      // stopped early (signal); the server drains its ring as drops
};

struct alignas(64) ClientSlot {
  std::atomic<uint32_t> state;
  int32_t pid;              // in the client's own PID namespace
  uint8_t process_id[16];   // mpod process id: liveness through the registry
  char hostname[32];
  // Clients that held this slot and died (counted by the client that took
  // the slot over from each): the buffers they held are lost with them.
  std::atomic<uint32_t> died_before;
  alignas(64) std::atomic<uint64_t> rx;  // written by the client only, on its own cache line
  std::atomic<uint64_t> bad;
};

struct Control {
  std::atomic<uint32_t> magic;  // kControlMagic once everything exists (release)
  uint32_t version;
  uint32_t clients;    // C: packets go to client hash % C
  uint32_t ring_size;
  std::atomic<uint32_t> finish;  // set by the server after its last enqueue (release)
  alignas(64) std::atomic<uint64_t> generated, tx, drops;  // the server's progress, for anyone to read
  ClientSlot slots[kMaxClients];
};

static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free);

}  // namespace csmp
