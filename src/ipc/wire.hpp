// The channel's wire format: one Unix datagram per message.
//
//   WireHeader (56 bytes, host byte order: peers share a machine)
//   action name (name_len bytes, no terminator)
//   payload (payload_len bytes)
//   file descriptors travel beside it as SCM_RIGHTS (nfds of them)
//
// The same bytes travel in a mailbox slot (the fast path, see mailbox.hpp)
// or a socket datagram. A datagram with a lane_token is the body of a lane
// marker: it is handled when the marker is reached in its lane, which keeps
// one sender's messages in order whichever path each takes. A doorbell is a
// bare header that only wakes a sleeping receiver.
//
// decode() trusts nothing: every length is checked against the datagram's
// real size and the limits below before any byte is used.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mpod/process.hpp"

namespace mpod::wire {

constexpr uint32_t kMagic = 0x4d50434d;  // "MCPM"
constexpr uint16_t kVersion = 2;
constexpr size_t kMaxName = 63;
constexpr size_t kMaxPayload = 64 * 1024;
constexpr size_t kMaxFds = 8;

enum class Type : uint8_t {
  message = 1,
  request = 2,
  reply = 3,
  error_reply = 4,
  doorbell = 5,  // no name, no payload: wakes the receiver
  marker = 6,    // in a lane only: "my next message is the socket datagram with lane_token"
};

struct WireHeader {
  uint32_t magic;
  uint16_t version;
  uint8_t type;
  uint8_t name_len;
  uint64_t request_id;  // 0 for one-way messages
  uint8_t sender[16];
  uint32_t payload_len;
  uint32_t nfds;
  uint32_t reply_box;   // requests: the requester's reply box + 1, 0 for none
  uint32_t box_gen;     // requests: the generation that box waits for
  uint64_t lane_token;  // see above; 0 for none
};
static_assert(sizeof(WireHeader) == 56);

constexpr size_t kMaxDatagram = sizeof(WireHeader) + kMaxName + kMaxPayload;

// How a message is routed besides its type and request id.
struct Routing {
  uint32_t reply_box = 0;
  uint32_t box_gen = 0;
  uint64_t lane_token = 0;
};

struct Decoded {
  Type type;
  uint64_t request_id;
  Routing routing;
  ProcessId sender;
  std::string name;
  std::span<const uint8_t> payload;  // points into the datagram
};

// Why a datagram was refused, for the log line.
struct DecodeError {
  std::string reason;
};

// The header and name part of a message (the payload is sent from the caller's buffer).
struct Head {
  uint8_t bytes[sizeof(WireHeader) + kMaxName];
  size_t len = 0;
};
// Throws invalid_argument for a bad name (except doorbell and marker, which
// have none), a payload over kMaxPayload or more than kMaxFds descriptors.
Head encode_head(Type type, uint64_t request_id, const ProcessId& sender, std::string_view name,
                 size_t payload_len, size_t nfds, const Routing& routing = {});

// `fds_received`: how many descriptors arrived with it (must equal the header's count).
// Returns the message or why it was refused.
std::optional<Decoded> decode(std::span<const uint8_t> datagram, size_t fds_received, DecodeError* why);

// Throws invalid_argument unless `name` is 1..kMaxName of [A-Za-z0-9_.:-].
void validate_action_name(std::string_view name);
// Throws invalid_argument for a bad action name, a payload over kMaxPayload
// or more than kMaxFds descriptors: what encode_head checks, for callers
// that must refuse a message even when there is nobody to send it to.
void validate_message(std::string_view name, size_t payload_len, size_t nfds);

}  // namespace mpod::wire
