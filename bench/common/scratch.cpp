#include "scratch.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "hugepages.hpp"

namespace mpod_bench {

namespace fs = std::filesystem;

Scratch::Scratch(const std::string& name, long hugepages_needed, const std::string& dpdk_program) {
  bin = fs::read_symlink("/proc/self/exe").parent_path();
  std::string tmpl = "/tmp/" + name + "-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp: " + std::string(strerror(errno)));
  mpod_dir = tmpl;
  huge_dir = pick_huge_dir(hugepages_needed);
  have_dpdk = access((bin + "/" + dpdk_program).c_str(), X_OK) == 0;
}

Scratch::~Scratch() {
  std::error_code ec;
  if (!mpod_dir.empty()) fs::remove_all(mpod_dir, ec);
  for (const auto& prefix : prefixes_) remove_files(prefix);
}

std::string Scratch::track_prefix(std::string prefix) {
  prefixes_.push_back(prefix);
  return prefix;
}

void remove_run_files(const std::string& prefix, const std::string& huge_dir) {
  std::error_code ec;
  const char* bases[] = {"/var/run", getenv("XDG_RUNTIME_DIR"), "/tmp"};
  for (const char* base : bases)
    if (base) fs::remove_all(fs::path(base) / "dpdk" / prefix, ec);
  if (!huge_dir.empty())
    for (auto& f : fs::directory_iterator(huge_dir, ec))
      if (f.path().filename().string().starts_with(prefix + "map_")) fs::remove(f.path(), ec);
}

std::vector<std::string> Scratch::dpdk_eal_options(const std::string& prefix) const {
  return {"--file-prefix=" + prefix, "--no-pci", "--no-telemetry", "--log-level=lib.eal:error",
          huge_dir.empty() ? "--no-huge" : "--huge-dir=" + huge_dir};
}

}  // namespace mpod_bench
