// mpod::Error — the one error type of the library.
//
// Every failure a caller can see is an mpod::Error: a code to branch on, a
// message written for the person running the program (what failed, which
// file or process, what to do next), the path involved (may be empty) and the
// errno of the failing system call (0 when none).
#pragma once

#include <stdexcept>
#include <string>

namespace mpod {

enum class Errc {
  invalid_argument,   // bad option, bad name, bad size
  not_found,          // file, memzone, primary or process does not exist
  already_exists,     // duplicate name, second primary
  busy,               // a live process holds what we need
  no_memory,          // no pages, no space in a table or in shared memory
  corrupt,            // a shared file fails its integrity checks
  version_mismatch,   // shared layout built by another version of mpod
  address_conflict,   // shared virtual range is taken in this process
  unsupported,        // the filesystem or kernel lacks a needed feature
  timed_out,          // waited the allowed time and gave up
  permission_denied,  // access refused by the OS
  system,             // any other failing system call
  owner_died,         // a lock's holder died; the protected state may need repair
  untrusted,          // a shared file or directory is not what mpod made: planted, or wrongly owned or open
};

// Short stable name of a code, e.g. "not_found".
const char* errc_name(Errc code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(Errc code, std::string message, std::string path = {}, int sys_errno = 0);

  Errc code() const noexcept { return code_; }
  const std::string& path() const noexcept { return path_; }
  int sys_errno() const noexcept { return errno_; }

 private:
  Errc code_;
  std::string path_;
  int errno_;
};

}  // namespace mpod
