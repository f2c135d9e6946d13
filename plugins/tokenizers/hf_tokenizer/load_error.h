// A problem with the tokenizer.json: what is wrong, and a HINT on what to do. what() is
// "<message> HINT: <hint>"; the plugin also points at the recipe line of tokenizer_model.
#pragma once

#include <string>
#include <utility>

#include "megahost/sdk/error.h"

namespace megahost::hf {

class LoadError : public sdk::Error {
 public:
  LoadError(mh_status_code code, const std::string& message, std::string hint)
      : sdk::Error(code, message + " HINT: " + hint), message_(message), hint_(std::move(hint)) {}
  LoadError(const std::string& message, std::string hint) : LoadError(MH_ERR_INVALID_ARG, message, std::move(hint)) {}
  const std::string& message() const { return message_; }
  const std::string& hint() const { return hint_; }

 private:
  std::string message_, hint_;
};

}  // namespace megahost::hf
