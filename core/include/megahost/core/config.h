// megahost core — configuration sections handed to plugins through the mh.config/1 service.
#pragma once

#include <toml++/toml.h>

#include <memory>
#include <string>
#include <string_view>

namespace megahost::core {

// One recipe table (e.g. [tokenizer]) with the file it came from, so errors can say file:line:key.
struct ConfigSection {
  std::shared_ptr<toml::table> table = std::make_shared<toml::table>();
  std::string file;  // recipe path, or a label such as "preprocess flags"
  std::string name;  // table name, e.g. "tokenizer"
};

// Parses TOML text into a section (tests, and configs the CLI builds from flags).
ConfigSection parse_config_section(std::string_view toml_text, const std::string& file,
                                   const std::string& name);

}  // namespace megahost::core
