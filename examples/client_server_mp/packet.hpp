// The synthetic packets of client_server_mp: how the server makes them and
// how a client checks them. Shared by mpod-mp-server and mpod-mp-client.
//
// A packet is one 2048-byte buffer from the pool: a PacketHeader (the flow's
// 5-tuple, a sequence number, the payload length and a checksum of the
// payload) followed by the payload, whose bytes are a function of the
// sequence number. Payloads are 46..1500 bytes, Ethernet's range: each drawn
// from it by default, or all of one length (46: minimum-size 64-byte frames,
// the size packet rates are usually quoted at). The flow's hash picks the
// client (hash % clients), as the NIC's RSS hash does in DPDK's example.
#pragma once

#include <cstdint>
#include <cstring>

namespace csmp {

constexpr uint32_t kBufSize = 2048;  // bytes per packet buffer (an mbuf's data room)
constexpr uint32_t kMinPayload = 46;
constexpr uint32_t kMaxPayload = 1500;

struct FiveTuple {
  uint32_t src_ip, dst_ip;
  uint16_t src_port, dst_port;
  uint8_t proto;
  uint8_t pad[3];
};
static_assert(sizeof(FiveTuple) == 16);

struct PacketHeader {
  FiveTuple flow;
  uint64_t seq;       // order of generation, over all clients
  uint32_t len;       // payload bytes
  uint32_t checksum;  // payload_checksum(payload, len)
};
static_assert(sizeof(PacketHeader) == 32 && sizeof(PacketHeader) + kMaxPayload <= kBufSize);

inline uint8_t* payload(void* pkt) { return static_cast<uint8_t*>(pkt) + sizeof(PacketHeader); }
inline const uint8_t* payload(const void* pkt) { return static_cast<const uint8_t*>(pkt) + sizeof(PacketHeader); }

// splitmix64's finaliser: a cheap, well-mixed 64-bit hash.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A deterministic generator (splitmix64): the same --seed makes the same traffic.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() { return mix64(s_ += 0x9e3779b97f4a7c15ull); }

 private:
  uint64_t s_;
};

inline uint32_t flow_hash(const FiveTuple& f) {
  const uint64_t ips = uint64_t(f.src_ip) << 32 | f.dst_ip;
  const uint64_t rest = uint64_t(f.src_port) << 24 | uint64_t(f.dst_port) << 8 | f.proto;
  return uint32_t(mix64(ips ^ mix64(rest + 0x5bd1e995)) >> 32);
}

inline uint32_t client_of(const FiveTuple& f, uint32_t clients) { return flow_hash(f) % clients; }

// Random-ish TCP/UDP flows between 10.0.0.0/8 and 192.168.0.0/16.
inline FiveTuple random_flow(Rng& rng) {
  const uint64_t a = rng.next(), b = rng.next();
  FiveTuple f{};
  f.src_ip = 0x0a000000u | uint32_t(a & 0xffffff);
  f.dst_ip = 0xc0a80000u | uint32_t((a >> 24) & 0xffff);
  f.src_port = uint16_t(1024 + (b & 0xffff) % 64512);
  f.dst_port = uint16_t((b >> 16) & 1 ? 443 : 53);
  f.proto = f.dst_port == 53 ? 17 : 6;
  return f;
}

// A Fletcher-style sum over 64-bit words (the tail zero-padded): reads every
// byte, and a swapped or changed word changes it.
inline uint32_t payload_checksum(const uint8_t* p, uint32_t len) {
  uint64_t a = 1, b = 0;
  uint32_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    a += w;
    b += a;
  }
  if (i < len) {
    uint64_t w = 0;
    std::memcpy(&w, p + i, len - i);
    a += w;
    b += a;
  }
  return uint32_t(mix64(a ^ mix64(b) ^ len));
}

// The payload length of packet `seq`: `fixed` (kMinPayload..kMaxPayload) if
// not 0, else drawn from kMinPayload..kMaxPayload.
inline uint32_t payload_length(uint64_t seq, uint32_t fixed) {
  return fixed ? fixed : kMinPayload + uint32_t(mix64(seq) % (kMaxPayload - kMinPayload + 1));
}

// Writes packet `seq` of flow `f` into a buffer of kBufSize bytes, with
// payload_length(seq, fixed_len) bytes of payload. Not inlined, here and in
// the DPDK port alike: inlined into the server's loop, with its many live
// values, GCC ran short of registers and rebuilt the generator's constants
// on every word, and mpod's server took 15% more CPU per packet than the
// port's, whose loop sits in a smaller function (perf, 2026-12-03).
[[gnu::noinline]] inline void fill_packet(void* buf, const FiveTuple& f, uint64_t seq, uint32_t fixed_len) {
  auto* h = static_cast<PacketHeader*>(buf);
  h->flow = f;
  h->seq = seq;
  h->len = payload_length(seq, fixed_len);
  uint8_t* p = payload(buf);
  Rng bytes(seq ^ 0x243f6a8885a308d3ull);
  for (uint32_t i = 0; i < h->len; i += 8) {  // whole words: the buffer has room past len
    const uint64_t w = bytes.next();
    std::memcpy(p + i, &w, 8);
  }
  h->checksum = payload_checksum(p, h->len);
}

enum class Verdict { ok, bad_length, bad_checksum, wrong_client, out_of_order };

inline const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::ok: return "ok";
    case Verdict::bad_length: return "payload length out of range";
    case Verdict::bad_checksum: return "payload checksum mismatch";
    case Verdict::wrong_client: return "flow hashes to another client";
    case Verdict::out_of_order: return "sequence number not above the previous packet's";
  }
  return "?";
}

// Checks a packet received by client `me` of `clients`. `last_seq` is the
// sequence number of the previous packet (one server, FIFO rings: it must
// grow); updated on success. `first` is true for the first packet.
inline Verdict verify_packet(const void* buf, uint32_t clients, uint32_t me, uint64_t* last_seq, bool first) {
  const auto* h = static_cast<const PacketHeader*>(buf);
  if (h->len < kMinPayload || h->len > kMaxPayload) return Verdict::bad_length;
  if (payload_checksum(payload(buf), h->len) != h->checksum) return Verdict::bad_checksum;
  if (client_of(h->flow, clients) != me) return Verdict::wrong_client;
  if (!first && h->seq <= *last_seq) return Verdict::out_of_order;
  *last_seq = h->seq;
  return Verdict::ok;
}

}  // namespace csmp
