// Shared helpers of the subcommands: error reporting and the plugin search path.
#pragma once

#include <cxxopts.hpp>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "megahost/core/plugins.h"

namespace megahost::host {

// Runs a subcommand body: prints "error: ..." for any exception and maps it to an exit code.
int guarded(const char* command, const std::function<int()>& body);

// Parses flags; on --help prints help and returns false with code 0; on a flag error prints
// the message and help and returns false with code 2.
bool parse_flags(cxxopts::Options& options, int argc, char** argv, cxxopts::ParseResult& out, int& exit_code);

std::vector<std::filesystem::path> search_path(const std::vector<std::string>& extra);

}  // namespace megahost::host
