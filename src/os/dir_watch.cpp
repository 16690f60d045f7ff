// DirWatch: inotify on a directory opened and checked as a Dir.
#include "dir_watch.hpp"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mpod::os {

DirWatch::DirWatch(const Dir& dir) : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)), path_(dir.path()) {
  if (!fd_)
    throw Error(Errc::system, "cannot create an inotify instance to watch " + path_ +
                "; raise fs.inotify.max_user_instances", path_, errno);
  // Through the descriptor already checked, never the path again.
  const std::string at = "/proc/self/fd/" + std::to_string(dir.fd());
  if (::inotify_add_watch(fd_.get(), at.c_str(), IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0)
    throw Error(Errc::system, "cannot watch " + path_ + " with inotify; raise fs.inotify.max_user_watches", path_,
                errno);
}

std::vector<std::string> DirWatch::take_names(bool* overflow) {
  std::vector<std::string> names;
  alignas(inotify_event) char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      throw Error(Errc::system, "cannot read the inotify events of " + path_, path_, errno);
    }
    if (n == 0) break;
    for (ssize_t at = 0; at + ssize_t(sizeof(inotify_event)) <= n;) {
      inotify_event ev;
      std::memcpy(&ev, buf + at, sizeof ev);
      if (ev.mask & IN_Q_OVERFLOW) *overflow = true;
      if (ev.len > 0) names.emplace_back(buf + at + sizeof(inotify_event));  // NUL-padded
      at += ssize_t(sizeof(inotify_event) + ev.len);
    }
  }
  return names;
}

}  // namespace mpod::os
