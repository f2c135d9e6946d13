// File-system helpers (see megahost/core/files.h).
#include "megahost/core/files.h"

#include <system_error>

#include "megahost/core/error.h"

namespace megahost::core {

void remove_tree(const std::filesystem::path& p) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(p, ec))) return;
  if (fs::is_directory(fs::symlink_status(p, ec)))
    for (const auto& e : fs::directory_iterator(p, ec)) remove_tree(e.path());
  fs::remove(p, ec);
  MH_CORE_CHECK(!ec, p.string(), ": cannot remove (", ec.message(), ")\nHINT: check permissions");
}

std::uintmax_t tree_bytes(const std::filesystem::path& p) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(p, ec);
  if (fs::is_regular_file(st)) {
    const std::uintmax_t n = fs::file_size(p, ec);
    return ec ? 0 : n;
  }
  std::uintmax_t total = 0;
  if (fs::is_directory(st))
    for (const auto& e : fs::directory_iterator(p, ec)) total += tree_bytes(e.path());
  return total;
}

}  // namespace megahost::core
