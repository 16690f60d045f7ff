#include "wire.hpp"

#include <cctype>
#include <cstring>

#include "mpod/error.hpp"

namespace mpod::wire {

namespace {
bool valid_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == ':' || c == '-';
}
}  // namespace

void validate_action_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxName)
    throw Error(Errc::invalid_argument, "action name '" + std::string(name) + "' must be 1 to " +
                                            std::to_string(kMaxName) + " characters");
  for (char c : name)
    if (!valid_name_char(c))
      throw Error(Errc::invalid_argument, "action name '" + std::string(name) +
                                              "' may contain only letters, digits and _ . : -");
}

namespace {
void check_sizes(std::string_view name, size_t payload_len, size_t nfds) {
  if (payload_len > kMaxPayload)
    throw Error(Errc::invalid_argument, "message '" + std::string(name) + "' payload of " +
                                            std::to_string(payload_len) + " bytes exceeds the limit of " +
                                            std::to_string(kMaxPayload));
  if (nfds > kMaxFds)
    throw Error(Errc::invalid_argument, "message '" + std::string(name) + "' carries " + std::to_string(nfds) +
                                            " file descriptors; the limit is " + std::to_string(kMaxFds));
}
}  // namespace

void validate_message(std::string_view name, size_t payload_len, size_t nfds) {
  validate_action_name(name);
  check_sizes(name, payload_len, nfds);
}

Head encode_head(Type type, uint64_t request_id, const ProcessId& sender, std::string_view name,
                 size_t payload_len, size_t nfds, const Routing& routing) {
  if (type != Type::doorbell && type != Type::marker) validate_action_name(name);
  check_sizes(name, payload_len, nfds);
  WireHeader h{};
  h.magic = kMagic;
  h.version = kVersion;
  h.type = static_cast<uint8_t>(type);
  h.name_len = static_cast<uint8_t>(name.size());
  h.request_id = request_id;
  std::memcpy(h.sender, sender.bytes.data(), 16);
  h.payload_len = static_cast<uint32_t>(payload_len);
  h.nfds = static_cast<uint32_t>(nfds);
  h.reply_box = routing.reply_box;
  h.box_gen = routing.box_gen;
  h.lane_token = routing.lane_token;
  Head out;
  std::memcpy(out.bytes, &h, sizeof h);
  std::memcpy(out.bytes + sizeof h, name.data(), name.size());
  out.len = sizeof h + name.size();
  return out;
}

std::optional<Decoded> decode(std::span<const uint8_t> d, size_t fds_received, DecodeError* why) {
  auto refuse = [&](std::string r) -> std::optional<Decoded> {
    if (why) why->reason = std::move(r);
    return std::nullopt;
  };
  WireHeader h;
  if (d.size() < sizeof h) return refuse("shorter than a header (" + std::to_string(d.size()) + " bytes)");
  std::memcpy(&h, d.data(), sizeof h);
  if (h.magic != kMagic) return refuse("bad magic");
  if (h.version != kVersion) return refuse("wire version " + std::to_string(h.version) + ", expected " + std::to_string(kVersion));
  if (h.type < 1 || h.type > 6) return refuse("unknown message type " + std::to_string(h.type));
  const bool bare = h.type == uint8_t(Type::doorbell) || h.type == uint8_t(Type::marker);
  if (bare) {
    if (h.name_len != 0 || h.payload_len != 0 || h.nfds != 0 || fds_received != 0 || d.size() != sizeof h)
      return refuse("a doorbell or marker with a name, payload or descriptors");
    if (h.type == uint8_t(Type::marker) && h.lane_token == 0) return refuse("a marker without a lane token");
  } else if (h.name_len == 0 || h.name_len > kMaxName) {
    return refuse("bad action name length " + std::to_string(h.name_len));
  }
  if (h.payload_len > kMaxPayload) return refuse("payload length " + std::to_string(h.payload_len) + " over the limit");
  if (h.nfds > kMaxFds) return refuse("claims " + std::to_string(h.nfds) + " descriptors");
  if (h.nfds != fds_received)
    return refuse("claims " + std::to_string(h.nfds) + " descriptors, " + std::to_string(fds_received) + " arrived");
  const size_t expected = sizeof h + h.name_len + size_t(h.payload_len);
  if (d.size() != expected)
    return refuse("size " + std::to_string(d.size()) + " does not match the header's " + std::to_string(expected));
  if ((h.type == 2 || h.type == 3 || h.type == 4) && h.request_id == 0) return refuse("request or reply without a request id");
  if (h.reply_box > 0 && h.type != uint8_t(Type::request)) return refuse("a reply box on a message that is not a request");
  Decoded m;
  m.type = static_cast<Type>(h.type);
  m.request_id = h.request_id;
  m.routing = {h.reply_box, h.box_gen, h.lane_token};
  std::memcpy(m.sender.bytes.data(), h.sender, 16);
  if (m.sender.empty()) return refuse("no sender id");
  m.name.assign(reinterpret_cast<const char*>(d.data() + sizeof h), h.name_len);
  for (char c : m.name)
    if (!valid_name_char(c)) return refuse("action name has a forbidden character");
  m.payload = d.subspan(sizeof h + h.name_len, h.payload_len);
  return m;
}

}  // namespace mpod::wire
