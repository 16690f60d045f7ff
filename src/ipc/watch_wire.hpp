// The watcher's protocol: frames on the stream connection every process
// holds to the domain's watcher (peer_watch.hpp).
//
//   frame: u32 length of what follows, u8 type, body     (host byte order)
//
//   hello      member -> watcher   protocol version, the member's process id
//   welcome    watcher -> member   the watcher's ProcessInfo: admitted
//   refuse     watcher -> member   why it is not admitted (text), then the watcher closes
//   subscribe  member -> watcher   "send me attached events, and every gone, from now on"
//   peers      watcher -> member   answer to subscribe: every live member's ProcessInfo
//   interest   member -> watcher   a process id: "send me its gone" (the member talks to it)
//   attached   watcher -> subscribers   a member was admitted
//   gone       watcher -> subscribers and the members interested in it: exited
//              or crashed, and the member's ProcessInfo
//   bye        either way          "I am leaving cleanly": the end of the stream that follows is an exit
//
// Nothing read is trusted: every length is checked against the frame before use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mpod/channel.hpp"
#include "mpod/process.hpp"

namespace mpod::watch {

constexpr uint8_t kProtocolVersion = 2;
// The largest frame: a `peers` list of the largest domain fits with room to spare.
constexpr uint32_t kMaxFrame = 1u << 20;

enum class Frame : uint8_t { hello = 1, welcome, refuse, subscribe, peers, attached, gone, bye, interest };
const char* frame_name(Frame f) noexcept;

// Appends one frame to `out`.
void append_frame(std::string& out, Frame type, std::string_view body);

// Bodies. put_* append to a body; get_* consume from the front of `in` and
// return false if it is short or malformed.
void put_info(std::string& body, const ProcessInfo& p);
bool get_info(std::string_view& in, ProcessInfo* p);
std::string hello_body(const ProcessId& id);
bool get_hello(std::string_view in, uint8_t* version, ProcessId* id);
std::string id_body(const ProcessId& id);
bool get_id(std::string_view in, ProcessId* id);
std::string gone_body(const ProcessInfo& p, PeerEvent e);
bool get_gone(std::string_view in, ProcessInfo* p, PeerEvent* e);
std::string peers_body(const std::vector<ProcessInfo>& peers);
bool get_peers(std::string_view in, std::vector<ProcessInfo>* out);

// Bytes of a connection that are not yet whole frames.
class FrameBuffer {
 public:
  void append(const char* data, size_t len) { buf_.append(data, len); }
  // The next whole frame, if one is there; `*bad` is set (and nothing more
  // is returned) if the stream is malformed.
  bool next(Frame* type, std::string* body, bool* bad);

 private:
  std::string buf_;
  size_t start_ = 0;
};

}  // namespace mpod::watch
