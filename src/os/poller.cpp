// Poller: epoll, for a thread that waits on many connections at once.
#include "poller.hpp"

#include <sys/epoll.h>

#include <cerrno>

namespace mpod::os {

Poller::Poller() : ep_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (!ep_) throw Error(Errc::system, "cannot create an epoll instance", "", errno);
}

void Poller::add(int fd, uint64_t tag, bool writable) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | (writable ? EPOLLOUT : 0u);
  ev.data.u64 = tag;
  if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
    throw Error(errno == ENOMEM || errno == ENOSPC ? Errc::no_memory : Errc::system,
                "cannot watch a descriptor with epoll", "", errno);
}

void Poller::modify(int fd, uint64_t tag, bool writable) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | (writable ? EPOLLOUT : 0u);
  ev.data.u64 = tag;
  if (::epoll_ctl(ep_.get(), EPOLL_CTL_MOD, fd, &ev) != 0)
    throw Error(Errc::system, "cannot change what epoll watches on a descriptor", "", errno);
}

void Poller::remove(int fd) noexcept { ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fd, nullptr); }

size_t Poller::wait(Ready* out, size_t cap, int timeout_ms) {
  epoll_event evs[64];
  const int max = static_cast<int>(cap < 64 ? cap : 64);
  int n;
  do n = ::epoll_wait(ep_.get(), evs, max, timeout_ms);
  while (n < 0 && errno == EINTR);
  if (n < 0) throw Error(Errc::system, "epoll_wait failed", "", errno);
  for (int i = 0; i < n; ++i) {
    out[i].tag = evs[i].data.u64;
    out[i].readable = (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    out[i].writable = (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;
  }
  return static_cast<size_t>(n);
}

}  // namespace mpod::os
