// The watcher's frames (watch_wire.hpp).
#include "watch_wire.hpp"

#include <cstring>

namespace mpod::watch {

namespace {
template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <class T>
bool get(std::string_view& in, T* v) {
  if (in.size() < sizeof *v) return false;
  std::memcpy(v, in.data(), sizeof *v);
  in.remove_prefix(sizeof *v);
  return true;
}
constexpr size_t kMaxHostname = 255;
}  // namespace

const char* frame_name(Frame f) noexcept {
  switch (f) {
    case Frame::hello: return "hello";
    case Frame::welcome: return "welcome";
    case Frame::refuse: return "refuse";
    case Frame::subscribe: return "subscribe";
    case Frame::peers: return "peers";
    case Frame::attached: return "attached";
    case Frame::gone: return "gone";
    case Frame::bye: return "bye";
    case Frame::interest: return "interest";
  }
  return "?";
}

void append_frame(std::string& out, Frame type, std::string_view body) {
  put(out, static_cast<uint32_t>(body.size() + 1));
  put(out, static_cast<uint8_t>(type));
  out.append(body);
}

void put_info(std::string& b, const ProcessInfo& p) {
  b.append(reinterpret_cast<const char*>(p.id.bytes.data()), p.id.bytes.size());
  put(b, static_cast<uint8_t>(p.role));
  put(b, p.pid);
  put(b, p.pid_ns);
  put(b, p.started_ns);
  put(b, p.uid);
  const size_t n = std::min(p.hostname.size(), kMaxHostname);
  put(b, static_cast<uint8_t>(n));
  b.append(p.hostname.data(), n);
}

bool get_info(std::string_view& in, ProcessInfo* p) {
  if (in.size() < p->id.bytes.size()) return false;
  std::memcpy(p->id.bytes.data(), in.data(), p->id.bytes.size());
  in.remove_prefix(p->id.bytes.size());
  uint8_t role = 0, host_len = 0;
  if (!get(in, &role) || role > uint8_t(Role::secondary) || !get(in, &p->pid) || !get(in, &p->pid_ns) ||
      !get(in, &p->started_ns) || !get(in, &p->uid) || !get(in, &host_len) || in.size() < host_len)
    return false;
  p->role = Role(role);
  p->hostname.assign(in.data(), host_len);
  in.remove_prefix(host_len);
  p->alive = true;
  return !p->id.empty();
}

std::string hello_body(const ProcessId& id) {
  std::string b;
  put(b, kProtocolVersion);
  b.append(reinterpret_cast<const char*>(id.bytes.data()), id.bytes.size());
  return b;
}

bool get_hello(std::string_view in, uint8_t* version, ProcessId* id) {
  return get(in, version) && get_id(in, id);
}

std::string id_body(const ProcessId& id) {
  return std::string(reinterpret_cast<const char*>(id.bytes.data()), id.bytes.size());
}

bool get_id(std::string_view in, ProcessId* id) {
  if (in.size() != id->bytes.size()) return false;
  std::memcpy(id->bytes.data(), in.data(), in.size());
  return !id->empty();
}

std::string gone_body(const ProcessInfo& p, PeerEvent e) {
  std::string b;
  put(b, static_cast<uint8_t>(e));
  put_info(b, p);
  return b;
}

bool get_gone(std::string_view in, ProcessInfo* p, PeerEvent* e) {
  uint8_t k = 0;
  if (!get(in, &k) || (k != uint8_t(PeerEvent::exited) && k != uint8_t(PeerEvent::crashed))) return false;
  *e = PeerEvent(k);
  if (!get_info(in, p) || !in.empty()) return false;
  p->alive = false;
  return true;
}

std::string peers_body(const std::vector<ProcessInfo>& peers) {
  std::string b;
  put(b, static_cast<uint32_t>(peers.size()));
  for (auto& p : peers) put_info(b, p);
  return b;
}

bool get_peers(std::string_view in, std::vector<ProcessInfo>* out) {
  uint32_t n = 0;
  if (!get(in, &n) || n > in.size()) return false;  // every entry takes more than a byte
  out->clear();
  for (uint32_t i = 0; i < n; ++i) {
    ProcessInfo p;
    if (!get_info(in, &p)) return false;
    out->push_back(std::move(p));
  }
  return in.empty();
}

bool FrameBuffer::next(Frame* type, std::string* body, bool* bad) {
  *bad = false;
  const size_t have = buf_.size() - start_;
  uint32_t len = 0;
  if (have < sizeof len) return false;
  std::memcpy(&len, buf_.data() + start_, sizeof len);
  if (len < 1 || len > kMaxFrame) {
    *bad = true;
    return false;
  }
  if (have < sizeof len + len) return false;
  const char* f = buf_.data() + start_ + sizeof len;
  *type = Frame(uint8_t(f[0]));
  body->assign(f + 1, len - 1);
  start_ += sizeof len + len;
  if (start_ == buf_.size()) {
    buf_.clear();
    start_ = 0;
  } else if (start_ > 65536 && start_ * 2 > buf_.size()) {
    buf_.erase(0, start_);
    start_ = 0;
  }
  return true;
}

}  // namespace mpod::watch
