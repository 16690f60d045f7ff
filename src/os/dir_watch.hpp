// DirWatch: inotify on one directory, for a thread that must hear of names
// created in it (the watcher learning of each new registration) without
// listing it again and again.
#pragma once

#include <string>
#include <vector>

#include "dir.hpp"
#include "os.hpp"

namespace mpod::os {

class DirWatch {
 public:
  // Watches `dir` for names created or moved into it. Throws system if the
  // kernel refuses (its per-user limit of inotify instances or watches
  // reached); callers that can do without it catch that.
  explicit DirWatch(const Dir& dir);
  // Readable (in a Poller) when names are waiting.
  int fd() const noexcept { return fd_.get(); }
  // The names created since the last call, in order, without blocking.
  // `*overflow` is set when the kernel dropped some: list the directory.
  std::vector<std::string> take_names(bool* overflow);

 private:
  Fd fd_;
  std::string path_;
};

}  // namespace mpod::os
