#include "mpod/error.hpp"

#include <cstring>

namespace mpod {

const char* errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::not_found: return "not_found";
    case Errc::already_exists: return "already_exists";
    case Errc::busy: return "busy";
    case Errc::no_memory: return "no_memory";
    case Errc::corrupt: return "corrupt";
    case Errc::version_mismatch: return "version_mismatch";
    case Errc::address_conflict: return "address_conflict";
    case Errc::unsupported: return "unsupported";
    case Errc::timed_out: return "timed_out";
    case Errc::permission_denied: return "permission_denied";
    case Errc::system: return "system";
    case Errc::owner_died: return "owner_died";
    case Errc::untrusted: return "untrusted";
  }
  return "unknown";
}

namespace {
std::string compose(const std::string& message, int sys_errno) {
  if (sys_errno == 0) return message;
  // The errno text goes in once, at the end, so messages read "...: No such file or directory".
  return message + " (" + std::strerror(sys_errno) + ")";
}
}  // namespace

Error::Error(Errc code, std::string message, std::string path, int sys_errno)
    : std::runtime_error(compose(message, sys_errno)),
      code_(code),
      path_(std::move(path)),
      errno_(sys_errno) {}

}  // namespace mpod
