// The channel's wire format: one Unix datagram per message.
//
//   WireHeader (48 bytes, little-endian host order: peers share a machine)
//   action name (name_len bytes, no terminator)
//   payload (payload_len bytes)
//   file descriptors travel beside it as SCM_RIGHTS (nfds of them)
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
constexpr uint16_t kVersion = 1;
constexpr size_t kMaxName = 63;
constexpr size_t kMaxPayload = 64 * 1024;
constexpr size_t kMaxFds = 8;

enum class Type : uint8_t { message = 1, request = 2, reply = 3, error_reply = 4 };

struct WireHeader {
  uint32_t magic;
  uint16_t version;
  uint8_t type;
  uint8_t name_len;
  uint64_t request_id;  // 0 for one-way messages
  uint8_t sender[16];
  uint32_t payload_len;
  uint32_t nfds;
  uint32_t reserved[2];
};
static_assert(sizeof(WireHeader) == 48);

constexpr size_t kMaxDatagram = sizeof(WireHeader) + kMaxName + kMaxPayload;

struct Decoded {
  Type type;
  uint64_t request_id;
  ProcessId sender;
  std::string name;
  std::span<const uint8_t> payload;  // points into the datagram
};

// Why a datagram was refused, for the log line.
struct DecodeError {
  std::string reason;
};

// Builds the header and name part (the payload is sent from the caller's buffer).
std::vector<uint8_t> encode_head(Type type, uint64_t request_id, const ProcessId& sender,
                                 std::string_view name, size_t payload_len, size_t nfds);

// `fds_received`: how many descriptors arrived with it (must equal the header's count).
// Returns the message or why it was refused.
std::optional<Decoded> decode(std::span<const uint8_t> datagram, size_t fds_received, DecodeError* why);

// Throws invalid_argument unless `name` is 1..kMaxName of [A-Za-z0-9_.:-].
void validate_action_name(std::string_view name);

}  // namespace mpod::wire
