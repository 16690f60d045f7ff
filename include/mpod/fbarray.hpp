// FbArray: a file-backed array shared between processes.
//
// A fixed number of fixed-size elements plus a used/free bit per element, in
// one file mapped by every process that attaches. The file is initialised
// under an exclusive lock; every process using it then holds a shared lock,
// so nobody can re-initialise or destroy it while it is in use. This is the
// page table behind each memseg list (DPDK's rte_fbarray).
//
// Thread and process safety: set_used/set_free/is_used and the counters are
// atomic per element, so different elements may be changed concurrently.
// The find_* calls are snapshots; callers that need a find-then-set to be
// atomic hold their own lock around it (the memory lock does, for memsegs).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <sys/types.h>

#include "mpod/process.hpp"

namespace mpod {
namespace os {
class Dir;
}

class FbArray {
 public:
  struct Header;  // file layout, private

  // Creates (or re-initialises a stale) <dir>/<name> for `len` elements of
  // `elt_size` bytes, all free and zeroed, recording `creator`. Fails with
  // busy, naming the holder, if a live process still uses a file of that name.
  static FbArray create(const std::string& dir, const std::string& name, uint32_t len,
                        uint32_t elt_size, const ProcessId& creator);
  // Attaches to an initialised <dir>/<name>. Fails with not_found, corrupt
  // (bad magic, truncated, sizes that do not add up), version_mismatch, or
  // busy while the creator is still initialising it.
  static FbArray attach(const std::string& dir, const std::string& name);
  // Removes <dir>/<name> if nobody uses it. Returns false if it did not exist;
  // throws busy (naming the holder) if a process is attached.
  static bool destroy(const std::string& dir, const std::string& name);
  // The same in a directory already opened and checked (mpod's own use):
  // nothing is reached by its path. attach() requires the file to belong to
  // `owner` (a uid, or -1 for anybody). A stale file is removed and created
  // anew, never reused; a planted link or FIFO at the name is removed
  // without being followed, a planted directory refused (untrusted).
  static FbArray create(const os::Dir& dir, const std::string& name, uint32_t len, uint32_t elt_size,
                        const ProcessId& creator);
  static FbArray attach(const os::Dir& dir, const std::string& name, uid_t owner);
  static bool destroy(const os::Dir& dir, const std::string& name);

  FbArray() = default;
  FbArray(FbArray&&) noexcept;
  FbArray& operator=(FbArray&&) noexcept;
  FbArray(const FbArray&) = delete;
  FbArray& operator=(const FbArray&) = delete;
  ~FbArray();  // detaches

  // Unmaps and releases the shared lock. The file stays.
  void detach() noexcept;
  // Detaches, then removes the file; throws busy if another process is attached.
  void destroy();

  bool valid() const noexcept { return header_ != nullptr; }
  const std::string& path() const noexcept { return path_; }
  uint32_t len() const noexcept;
  uint32_t elt_size() const noexcept;
  uint32_t count_used() const noexcept;
  ProcessId creator() const noexcept;

  // Element `idx` (< len()); its storage is shared by every attached process.
  void* get(uint32_t idx) const;
  template <class T>
  T* at(uint32_t idx) const { return static_cast<T*>(get(idx)); }

  // Marks used/free. Returns the previous state.
  bool set_used(uint32_t idx);
  bool set_free(uint32_t idx);
  bool is_used(uint32_t idx) const;

  // First index >= start that is used / free; nullopt if none.
  std::optional<uint32_t> find_next_used(uint32_t start) const;
  std::optional<uint32_t> find_next_free(uint32_t start) const;
  // First index >= start beginning a run of `n` free elements; nullopt if none.
  std::optional<uint32_t> find_next_n_free(uint32_t start, uint32_t n) const;
  // Length of the run of used / free elements starting at `start` (0 if start is the other state).
  uint32_t run_length_used(uint32_t start) const;
  uint32_t run_length_free(uint32_t start) const;
  // Start and length of the longest run of free elements at or after `start`.
  struct Run {
    uint32_t start = 0;
    uint32_t len = 0;
  };
  Run find_biggest_free(uint32_t start) const;

 private:
  FbArray(std::string path, int fd, Header* h, uint32_t len, uint32_t elt_size) noexcept;
  std::optional<uint32_t> find_next(uint32_t start, bool used) const;
  uint32_t run_length(uint32_t start, bool used) const;

  std::string path_;
  int fd_ = -1;
  Header* header_ = nullptr;
  // The geometry, this process's own copy: the shared header is writable by
  // the group and never trusted after the checks made when attaching.
  size_t map_len_ = 0;
  uint32_t len_ = 0, elt_size_ = 0;
  uint64_t data_offset_ = 0, mask_offset_ = 0;
};

}  // namespace mpod
