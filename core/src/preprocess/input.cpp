// Input files of `megahost preprocess`: glob expansion and streaming decompression.
#include "megahost/core/preprocess/input.h"

#include <fcntl.h>
#include <glob.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "megahost/core/error.h"

namespace megahost::core::prep {

namespace {

constexpr size_t kRawBufferBytes = size_t{1} << 20;

bool is_glob(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

}  // namespace

std::vector<std::string> expand_inputs(const std::vector<std::string>& args) {
  std::vector<std::string> files;
  for (const auto& a : args) {
    if (!is_glob(a)) {
      files.push_back(a);
      continue;
    }
    glob_t g{};
    const int rc = ::glob(a.c_str(), 0, nullptr, &g);  // glob(3) sorts its matches
    if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
      ::globfree(&g);
      throw Error(cat(a, ": no file matches this --input pattern\nHINT: check the pattern; quote it so "
                         "that megahost, not the shell, expands it"));
    }
    if (rc != 0) {
      ::globfree(&g);
      throw Error(cat(a, ": cannot expand this --input pattern (glob error ", rc, ")"));
    }
    std::vector<std::string> matches(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    ::globfree(&g);
    std::sort(matches.begin(), matches.end());  // byte order, whatever the locale
    files.insert(files.end(), matches.begin(), matches.end());
  }
  return files;
}

const char* compression_name(Compression c) {
  switch (c) {
    case Compression::Gzip: return "gzip";
    case Compression::Zstd: return "zstd";
    default: return "plain";
  }
}

// One of the two decoders, alive for the whole file.
struct InputStream::Codec {
  z_stream z{};
  bool z_init = false;
  bool z_member_done = false;  // a gzip member ended; another may follow (concatenated .gz)
  ZSTD_DStream* zstd = nullptr;
  size_t zstd_hint = 1;        // 0 when a zstd frame has just ended
  ~Codec() {
    if (z_init) inflateEnd(&z);
    if (zstd != nullptr) ZSTD_freeDStream(zstd);
  }
};

InputStream::InputStream(const std::string& path) : path_(path), in_(kRawBufferBytes) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0)
    throw Error(cat(path, ": cannot open input: ", std::strerror(errno),
                    "\nHINT: check the paths given to --input"));
  // Magic bytes decide the codec, not the file name.
  while (in_end_ < 4 && fill()) {
  }
  const auto* b = reinterpret_cast<const unsigned char*>(in_.data());
  const size_t n = in_end_;
  if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
    compression_ = Compression::Gzip;
  } else if (n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) {
    compression_ = Compression::Zstd;
  }
  if (compression_ == Compression::None) return;
  codec_ = std::make_unique<Codec>();
  if (compression_ == Compression::Gzip) {
    if (inflateInit2(&codec_->z, 16 + MAX_WBITS) != Z_OK) throw Error(cat(path, ": cannot start zlib"));
    codec_->z_init = true;
  } else {
    codec_->zstd = ZSTD_createDStream();
    if (codec_->zstd == nullptr) throw Error(cat(path, ": cannot start zstd"));
    ZSTD_initDStream(codec_->zstd);
  }
}

InputStream::~InputStream() {
  if (fd_ >= 0) ::close(fd_);
}

bool InputStream::fill() {
  if (eof_) return false;
  if (in_pos_ > 0 && in_pos_ == in_end_) in_pos_ = in_end_ = 0;
  if (in_end_ == in_.size()) return true;  // full: caller consumes first
  for (;;) {
    const ssize_t r = ::read(fd_, in_.data() + in_end_, in_.size() - in_end_);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw Error(cat(path_, ": read failed: ", std::strerror(errno)));
    if (r == 0) {
      eof_ = true;
      return false;
    }
    in_end_ += static_cast<size_t>(r);
    file_bytes_read_ += static_cast<uint64_t>(r);
    return true;
  }
}

size_t InputStream::read(char* out, size_t n) {
  if (n == 0) return 0;
  if (compression_ == Compression::None) {
    if (in_pos_ == in_end_ && !fill()) return 0;
    const size_t k = std::min(n, in_end_ - in_pos_);
    std::memcpy(out, in_.data() + in_pos_, k);
    in_pos_ += k;
    return k;
  }
  Codec& c = *codec_;
  for (;;) {
    const bool at_eof = in_pos_ == in_end_ && !fill();
    size_t produced = 0;
    if (compression_ == Compression::Gzip) {
      if (c.z_member_done) {
        if (at_eof) return 0;
        inflateReset(&c.z);  // another member follows (concatenated .gz files)
        c.z_member_done = false;
      }
      c.z.next_in = reinterpret_cast<Bytef*>(in_.data() + in_pos_);
      c.z.avail_in = static_cast<uInt>(in_end_ - in_pos_);
      c.z.next_out = reinterpret_cast<Bytef*>(out);
      c.z.avail_out = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
      const int rc = inflate(&c.z, Z_NO_FLUSH);
      in_pos_ = in_end_ - c.z.avail_in;
      produced = static_cast<size_t>(reinterpret_cast<char*>(c.z.next_out) - out);
      if (rc == Z_STREAM_END) {
        c.z_member_done = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        throw Error(cat(path_, ": not valid gzip data (zlib: ", c.z.msg != nullptr ? c.z.msg : "error", ")",
                        "\nHINT: the file is corrupt; check it with gzip -t"));
      }
    } else {
      if (at_eof && c.zstd_hint == 0) return 0;  // the last frame ended and is flushed
      ZSTD_inBuffer zin{in_.data() + in_pos_, in_end_ - in_pos_, 0};
      ZSTD_outBuffer zout{out, n, 0};
      const size_t rc = ZSTD_decompressStream(c.zstd, &zout, &zin);
      in_pos_ += zin.pos;
      if (ZSTD_isError(rc))
        throw Error(cat(path_, ": not valid zstd data (", ZSTD_getErrorName(rc), ")",
                        "\nHINT: the file is corrupt; check it with zstd -t"));
      c.zstd_hint = rc;
      produced = zout.pos;
    }
    if (produced > 0) return produced;
    if (at_eof) {
      // Nothing more will come: every gzip member / zstd frame must have ended.
      const bool complete = compression_ == Compression::Gzip ? c.z_member_done : c.zstd_hint == 0;
      if (!complete)
        throw Error(cat(path_, ": truncated ", compression_name(compression_),
                        " stream\nHINT: the file was cut short; fetch or compress it again"));
      return 0;
    }
  }
}

}  // namespace megahost::core::prep
