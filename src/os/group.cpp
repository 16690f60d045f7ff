// Sharing a domain with one group (--group), and who may speak to us.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <mutex>
#include <vector>

#include "os.hpp"

namespace mpod::os {

namespace {
std::atomic<gid_t> g_group{static_cast<gid_t>(-1)};
}

void set_shared_group(gid_t gid) noexcept { g_group.store(gid); }
gid_t shared_group() noexcept { return g_group.load(); }
bool has_shared_group() noexcept { return shared_group() != static_cast<gid_t>(-1); }
mode_t group_mode(mode_t mode) noexcept { return has_shared_group() ? mode | ((mode & 0700) >> 3) : mode; }

gid_t resolve_group(const std::string& s) {
  if (!s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    return static_cast<gid_t>(std::stoul(s));
  std::vector<char> buf(16384);
  group g;
  group* found = nullptr;
  if (::getgrnam_r(s.c_str(), &g, buf.data(), buf.size(), &found) != 0 || !found)
    throw Error(Errc::invalid_argument, "--group=" + s + ": no such group; give an existing group's name or number");
  return found->gr_gid;
}

bool uid_is_trusted(uid_t uid, gid_t gid) {
  // Root can read and write every file of the domain anyway: refusing its
  // datagrams would protect nothing, and a root primary answers members by socket.
  if (uid == ::geteuid() || uid == 0) return true;
  if (!has_shared_group()) return false;
  const gid_t group = shared_group();
  if (gid == group) return true;
  // A member through its supplementary groups: looked up once per uid.
  static std::mutex mu;
  static std::map<uid_t, bool> cache;
  std::lock_guard lk(mu);
  if (auto it = cache.find(uid); it != cache.end()) return it->second;
  bool member = false;
  std::vector<char> buf(16384);
  passwd pw;
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found) {
    int n = 64;
    std::vector<gid_t> groups(static_cast<size_t>(n), 0);
    if (::getgrouplist(found->pw_name, found->pw_gid, groups.data(), &n) < 0) {
      groups.resize(size_t(n));
      ::getgrouplist(found->pw_name, found->pw_gid, groups.data(), &n);
    }
    groups.resize(size_t(std::max(n, 0)));
    member = std::find(groups.begin(), groups.end(), group) != groups.end();
  }
  cache.emplace(uid, member);
  return member;
}

}  // namespace mpod::os
