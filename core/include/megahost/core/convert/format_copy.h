// megahost core — a megahost checkpoint from one [checkpoint] format plugin into another
// (`megahost convert --loader <format id> --saver <format id>`), offline, entry by entry.
#pragma once

#include <string>

#include "megahost/core/plugins.h"

namespace megahost::core {

// Reads mh_dir (a save folder: its tracked iteration; or one iter_* folder) through format
// plugin `from`, writes every entry of every rank folder through `to` into
// out_dir/iter_N[/rank_<5-digit rank>], unchanged but for meta.json's checkpoint_plugin, then the tracker
// file. One tensor in memory at a time; the layout stays as saved (any layout loads it). Returns
// a one-line summary; throws naming the folder and entry.
std::string convert_checkpoint_format(const PluginRegistry& reg, const std::string& mh_dir, const std::string& from,
                                      const std::string& out_dir, const std::string& to);

}  // namespace megahost::core
