// Unix sockets: datagrams with descriptor passing and sender credentials (the
// channel), and stream connections (the watcher's, whose hang-up reports a death).
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <linux/fs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "mpod/log.hpp"
#include "dir.hpp"
#include "os.hpp"

namespace mpod::os {

namespace {
// A sockaddr_un for `path`. When the path is too long for sun_path, the
// directory is opened and the name reached as /proc/self/fd/<dirfd>/<name>;
// `dir_keepalive` holds that directory open until the call is made.
socklen_t make_address(const std::string& path, sockaddr_un* sa, Fd* dir_keepalive) {
  std::memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  std::string use = path;
  if (path.size() >= sizeof sa->sun_path) {
    auto slash = path.rfind('/');
    *dir_keepalive = open_file(path.substr(0, slash), O_PATH | O_DIRECTORY);
    use = "/proc/self/fd/" + std::to_string(dir_keepalive->get()) + path.substr(slash);
    if (use.size() >= sizeof sa->sun_path)
      throw Error(Errc::invalid_argument, "socket name in " + path + " is too long; use a shorter --runtime-dir or --file-prefix", path);
  }
  std::memcpy(sa->sun_path, use.data(), use.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + use.size() + 1);
}
}  // namespace

namespace {
// bind() creates the node by path and applies the umask, and a socket's
// mode can only be set by path. So the socket is bound in a directory nobody
// else can enter, given its mode there, made to listen if it is a stream
// (so it never appears in `dir` refusing connections), then renamed into
// place without replacing anything: no name outside our own directory is
// ever followed.
void bind_in_place(int s, const Dir& dir, const std::string& name, mode_t mode, int listen_backlog) {
  const std::string path = dir.path_of(name);
  uint8_t r[8];
  random_bytes(r, sizeof r);
  char suffix[17];
  for (int i = 0; i < 8; ++i) std::snprintf(suffix + 2 * i, 3, "%02x", r[i]);
  // Named after the socket, so whoever reaps its owner knows whose it is.
  const std::string priv = std::string(kBindDirPrefix) + name + "-" + suffix;
  if (::mkdirat(dir.fd(), priv.c_str(), 0700) != 0)
    throw Error(Errc::system, "cannot create a private directory in " + dir.path() + " to bind " + path,
                dir.path_of(priv), errno);
  Fd pd(::openat(dir.fd(), priv.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct Cleanup {  // the node through our own descriptor, never by the name again
    const Dir& dir;
    const std::string& priv;
    const Fd& pd;
    ~Cleanup() {
      if (pd) ::unlinkat(pd.get(), "s", 0);
      ::unlinkat(dir.fd(), priv.c_str(), AT_REMOVEDIR);  // removes only an empty directory, never follows
    }
  } cleanup{dir, priv, pd};
  struct stat st;
  if (!pd || ::fstat(pd.get(), &st) != 0 || st.st_uid != ::geteuid() || (st.st_mode & 077))
    throw Error(Errc::untrusted, "the private directory " + dir.path_of(priv) + " made to bind " + path +
                " was replaced; check who can write to " + dir.path(), dir.path_of(priv));
  sockaddr_un sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  const std::string at = "/proc/self/fd/" + std::to_string(pd.get()) + "/s";
  std::memcpy(sa.sun_path, at.data(), at.size());
  if (::bind(s, reinterpret_cast<sockaddr*>(&sa), socklen_t(offsetof(sockaddr_un, sun_path) + at.size() + 1)) != 0) {
    int err = errno;
    MPOD_LOG(os, debug, "bind %s failed: %s", path.c_str(), std::strerror(err));
    throw Error(err == EACCES ? Errc::permission_denied : Errc::system, "cannot bind the socket " + path, path, err);
  }
  if (listen_backlog >= 0 && ::listen(s, listen_backlog) != 0)
    throw Error(Errc::system, "cannot listen on the socket " + path, path, errno);
  if (::fchmodat(pd.get(), "s", group_mode(mode), 0) != 0)
    throw Error(Errc::system, "cannot set permissions of " + path, path, errno);
  if (has_shared_group() && ::fchownat(pd.get(), "s", static_cast<uid_t>(-1), shared_group(), AT_SYMLINK_NOFOLLOW) != 0)
    throw Error(Errc::system, "cannot give " + path + " to group " + std::to_string(shared_group()), path, errno);
  if (::syscall(SYS_renameat2, pd.get(), "s", dir.fd(), name.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    throw Error(err == EEXIST ? Errc::untrusted : Errc::system,
                "cannot put the socket in place at " + path +
                    (err == EEXIST ? ": something else is there; remove it and check who can write to " + dir.path()
                                   : std::string()),
                path, err);
  }
  MPOD_LOG(os, debug, "bound socket %s", path.c_str());
}
}  // namespace

Fd bind_datagram_socket(const Dir& dir, const std::string& name, mode_t mode) {
  const std::string path = dir.path_of(name);
  Fd s(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s) throw Error(Errc::system, "cannot create a socket for " + path, path, errno);
  int one = 1;
  if (::setsockopt(s.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0)
    throw Error(Errc::system, "cannot enable credentials on " + path, path, errno);
  int buf = 4 << 20;  // room for bursts of requests; the kernel caps it at rmem_max
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  ::setsockopt(s.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  bind_in_place(s.get(), dir, name, mode, -1);
  return s;
}

Fd listen_stream_socket(const Dir& dir, const std::string& name, mode_t mode, int backlog) {
  const std::string path = dir.path_of(name);
  Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s) throw Error(Errc::system, "cannot create a socket for " + path, path, errno);
  bind_in_place(s.get(), dir, name, mode, backlog);
  return s;
}

Fd open_socket_node(const Dir& dir, const std::string& name, uid_t owner) {
  const std::string path = dir.path_of(name);
  Fd fd(::openat(dir.fd(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Fd();
    throw Error(Errc::system, "cannot open the channel socket " + path, path, errno);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw Error(Errc::system, "cannot stat " + path, path, errno);
  if (!S_ISSOCK(st.st_mode) || (owner != kAnyOwner && st.st_uid != owner))
    throw Error(Errc::untrusted,
                path + (S_ISSOCK(st.st_mode) ? " belongs to uid " + std::to_string(st.st_uid) + ", not uid " +
                                                   std::to_string(owner) + ", the owner of that process's registration"
                                             : std::string(" is not a socket")) +
                    ": nothing is sent there; check who can write to " + dir.path(),
                path);
  return fd;
}

std::string socket_node_address(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

namespace {
// A socket of `type` connected to the node `node` (an O_PATH handle); empty
// if nobody listens or is bound there.
Fd connect_to_node(const Fd& node, int type, const std::string& path) {
  // Non-blocking: a Unix connect completes at once, or fails with EAGAIN
  // when the listener's backlog is full (retried by the caller), never waits.
  Fd s(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s) throw Error(Errc::system, "cannot create a socket to reach " + path, path, errno);
  if (type == SOCK_DGRAM) {
    int buf = 4 << 20;  // room for bursts of requests, as the bound socket has
    ::setsockopt(s.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  }
  sockaddr_un sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  const std::string at = socket_node_address(node.get());
  std::memcpy(sa.sun_path, at.data(), at.size());
  int rc;
  do rc = ::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), socklen_t(offsetof(sockaddr_un, sun_path) + at.size() + 1));
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    // Its owner closed it (as if not bound), or a listener's backlog is full: try again later.
    if (errno == ECONNREFUSED || errno == ENOENT || errno == EAGAIN) return Fd();
    throw Error(Errc::system, "cannot connect to the socket " + path, path, errno);
  }
  return s;
}
}  // namespace

Fd connect_datagram_socket(const Dir& dir, const std::string& name, uid_t owner) {
  Fd node = open_socket_node(dir, name, owner);
  return node ? connect_to_node(node, SOCK_DGRAM, dir.path_of(name)) : Fd();
}

Fd connect_stream_socket(const Dir& dir, const std::string& name) {
  Fd node = open_socket_node(dir, name, kAnyOwner);
  return node ? connect_to_node(node, SOCK_STREAM, dir.path_of(name)) : Fd();
}

Fd accept_connection(int listener, PeerCredentials* who) {
  Fd c;
  do c.reset(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  while (!c && errno == EINTR);
  if (!c) {
    if (errno == EAGAIN || errno == ECONNABORTED) return Fd();
    throw Error(errno == EMFILE || errno == ENFILE ? Errc::no_memory : Errc::system,
                "cannot accept a connection", "", errno);
  }
  *who = peer_credentials(c.get());
  return c;
}

PeerCredentials peer_credentials(int fd) {
  ucred cr{};
  socklen_t len = sizeof cr;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
    throw Error(Errc::system, "cannot read the credentials of a connection's peer", "", errno);
  return {cr.uid, cr.gid};
}

ssize_t send_some(int fd, const void* data, size_t len) {
  for (;;) {
    ssize_t n = ::send(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    if (errno == EPIPE || errno == ECONNRESET) return -1;
    throw Error(Errc::system, "cannot send on a connection", "", errno);
  }
}

ssize_t recv_some(int fd, void* buf, size_t cap) {
  for (;;) {
    ssize_t n = ::recv(fd, buf, cap, MSG_DONTWAIT);
    if (n > 0) return n;
    if (n == 0) return 0;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return -1;
    if (errno == ECONNRESET) return 0;
    throw Error(Errc::system, "cannot receive on a connection", "", errno);
  }
}

SendStatus send_datagram(int fd, const std::string& dest, const Part* parts, size_t nparts, const int* fds,
                         size_t nfds) {
  sockaddr_un sa;
  Fd dir;
  const socklen_t len = dest.empty() ? 0 : make_address(dest, &sa, &dir);
  iovec iov[4];
  for (size_t i = 0; i < nparts && i < 4; ++i) iov[i] = {const_cast<void*>(parts[i].data), parts[i].len};
  msghdr mh{};
  if (!dest.empty()) {  // empty: a connected socket
    mh.msg_name = &sa;
    mh.msg_namelen = len;
  }
  mh.msg_iov = iov;
  mh.msg_iovlen = nparts;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  if (nfds > 0) {
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  for (;;) {
    if (::sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return SendStatus::ok;
    int err = errno;
    if (err == EINTR) continue;
    if (err == ENOENT || err == ECONNREFUSED || err == ENOTSOCK) return SendStatus::peer_gone;
    if (err == EAGAIN || err == ENOBUFS) return SendStatus::full;
    MPOD_LOG(os, debug, "send to %s failed: %s", dest.c_str(), std::strerror(err));
    throw Error(err == EACCES ? Errc::permission_denied : Errc::system, "cannot send to " + dest, dest, err);
  }
}

bool recv_datagram(int fd, void* buf, size_t cap, Received* out) {
  iovec iov{buf, cap};
  // Room for exactly 8 descriptors and the credentials: a datagram with more
  // descriptors arrives with MSG_CTRUNC, the extra ones closed by the kernel.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8) + CMSG_SPACE(sizeof(ucred))];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n;
  do n = ::recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return false;
    throw Error(Errc::system, "cannot receive on the channel socket", "", errno);
  }
  *out = Received{};
  out->len = static_cast<size_t>(n);
  out->truncated = (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int f;
        std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
        out->fds.push_back(f);
      }
    } else if (c->cmsg_type == SCM_CREDENTIALS) {
      ucred cr;
      std::memcpy(&cr, CMSG_DATA(c), sizeof cr);
      out->has_creds = true;
      out->uid = cr.uid;
      out->gid = cr.gid;
    }
  }
  return true;
}

Fd make_event() {
  Fd e(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!e) throw Error(Errc::system, "cannot create an eventfd", "", errno);
  return e;
}

void signal_event(int fd) {
  uint64_t one = 1;
  (void)!::write(fd, &one, sizeof one);
}

void drain_event(int fd) {
  uint64_t v;
  (void)!::read(fd, &v, sizeof v);
}

int wait_readable(int a, int b, int timeout_ms) {
  pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
  int n = ::poll(p, 2, timeout_ms);
  if (n <= 0) return 0;
  // A hang-up or error counts as readable: the read that follows reports it.
  constexpr short ready = POLLIN | POLLHUP | POLLERR;
  return ((p[0].revents & ready) ? 1 : 0) | ((p[1].revents & ready) ? 2 : 0);
}

}  // namespace mpod::os
