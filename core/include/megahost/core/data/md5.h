// megahost core — MD5 (RFC 1321), for cache file names: Megatron names its index caches by the
// MD5 of the dataset's description. Not for security.
#pragma once

#include <string>
#include <string_view>

namespace megahost::core::data {

// Lower-case hex digest, as Python's hashlib.md5(text).hexdigest().
std::string md5_hex(std::string_view bytes);

}  // namespace megahost::core::data
