// megahost core — file-system helpers shared by checkpointing and conversion.
#pragma once

#include <cstdint>
#include <filesystem>

namespace megahost::core {

// Removes a folder tree (or a file); errors name the path. Not std::filesystem::remove_all: the
// PyTorch 2.x wheel's libtorch.so exports a broken copy of it that wins symbol resolution
// (docs/architecture.md).
void remove_tree(const std::filesystem::path& p);

// Bytes of the regular files under p (p itself when a file); unreadable entries count 0.
std::uintmax_t tree_bytes(const std::filesystem::path& p);

}  // namespace megahost::core
