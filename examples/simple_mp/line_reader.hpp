// Lines from a file descriptor (stdin), with a way out: waiting for input is
// a poll of 100 ms at a time, so a stop request (SIGINT) is noticed while
// nobody types. Works the same for a terminal and for piped commands.
#pragma once

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <string>

namespace simple_mp {

class LineReader {
 public:
  enum class Status { line, end, stopped };

  explicit LineReader(int fd) : fd_(fd) {}

  // The next line without its '\n' (and '\r'); `end` at end of input.
  Status next(std::string* line, const std::function<bool()>& stop) {
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        *line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (!line->empty() && line->back() == '\r') line->pop_back();
        return Status::line;
      }
      if (eof_) {
        if (buf_.empty()) return Status::end;
        line->swap(buf_);  // a last line without '\n'
        buf_.clear();
        return Status::line;
      }
      if (stop()) return Status::stopped;
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, 100);
      if (r < 0 && errno != EINTR) eof_ = true;
      if (r <= 0) continue;
      char chunk[4096];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) eof_ = true;
      else buf_.append(chunk, size_t(n));
    }
  }

 private:
  int fd_;
  std::string buf_;
  bool eof_ = false;
};

}  // namespace simple_mp
