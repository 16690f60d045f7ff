// Process identity and the process registry.
//
// Every attached process has a random 128-bit id. Its registration file
// <runtime-dir>/<prefix>/procs/<id> is created exclusively, so ids are unique
// by construction, and is locked for the process's whole life: a process is
// alive exactly while that lock is held, which any process in any namespace
// sharing the directory can test. PIDs are recorded for people, never used as keys.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mpod {

struct ProcessId {
  std::array<uint8_t, 16> bytes{};

  static ProcessId random();
  // Parses 32 hex digits; nullopt if `hex` is anything else.
  static std::optional<ProcessId> parse(std::string_view hex);
  std::string hex() const;        // 32 lowercase hex digits
  std::string short_hex() const;  // first 8, for logs and tables
  bool empty() const noexcept;
  friend bool operator==(const ProcessId&, const ProcessId&) = default;
};

// The most secondaries one domain (--file-prefix) holds at once beside its
// primary; the watcher refuses the next with a clear error (`busy`).
constexpr size_t kMaxSecondaries = 1024;
// All processes of a full domain. Every table sized by processes holds this
// many; a channel mailbox has a lane for each of the others (kMaxSecondaries).
constexpr size_t kMaxProcesses = kMaxSecondaries + 1;

enum class Role { primary, secondary };
const char* role_name(Role r) noexcept;

struct ProcessInfo {
  ProcessId id;
  Role role = Role::secondary;
  int32_t pid = 0;           // as seen in the process's own PID namespace
  uint64_t pid_ns = 0;       // inode of its PID namespace
  std::string hostname;      // UTS name: the pod name in Kubernetes
  uint64_t started_ns = 0;   // CLOCK_REALTIME at registration
  uint32_t uid = 0;          // the uid it runs as: its registration file's owner, as the kernel records it
  bool alive = false;        // registration lock held right now
};

}  // namespace mpod
