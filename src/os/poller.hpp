// Poller: epoll for one thread that waits on many descriptors (the watcher's
// connections). Level-triggered; each descriptor carries a caller's tag.
#pragma once

#include <cstddef>
#include <cstdint>

#include "os.hpp"

namespace mpod::os {

class Poller {
 public:
  Poller();  // throws system if the kernel refuses an epoll instance
  // Watches `fd` for input and hang-up, and for room to write if `writable`.
  // Throws no_memory if the kernel has no room for more watches.
  void add(int fd, uint64_t tag, bool writable = false);
  void modify(int fd, uint64_t tag, bool writable);
  void remove(int fd) noexcept;
  struct Ready {
    uint64_t tag;
    bool readable;  // input, end of stream, hang-up or error: a read tells which
    bool writable;
  };
  // Waits up to `timeout_ms` (-1: forever) and fills at most `cap` entries; returns how many.
  size_t wait(Ready* out, size_t cap, int timeout_ms);

 private:
  Fd ep_;
};

}  // namespace mpod::os
