// JSON lines -> .bin/.idx. The main thread cuts the input into blocks of whole lines, workers
// parse and tokenize blocks in parallel, and the main thread writes finished blocks strictly in
// input order, so the output does not depend on the number of workers. Memory is bounded by the
// blocks in flight (4 per worker) whatever the corpus size; only the writer's index arrays
// (12 bytes per sequence/document, as Megatron's builder) grow with it.
#include "megahost/core/preprocess.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "megahost/core/error.h"
#include "megahost/core/preprocess/input.h"
#include "megahost/core/preprocess/json_fields.h"
#include "megahost/core/preprocess/sentences.h"
#include "preprocess/line_blocks.h"

namespace megahost::core {

namespace {

constexpr size_t kBlockBytes = size_t{512} << 10;

// One key's output for a block: documents of sequences of tokens, flat.
struct KeyOutput {
  std::vector<int32_t> tokens;
  std::vector<int32_t> seq_lengths;
  std::vector<int32_t> doc_seqs;  // sequences per document (0: an empty document)
  void clear() {
    tokens.clear();
    seq_lengths.clear();
    doc_seqs.clear();
  }
};

struct Chunk {
  prep::LineBlock block;
  std::vector<KeyOutput> out;  // per json key
  int64_t documents = 0, blank = 0;
  std::string error;
  bool done = false;
};

// Per-worker scratch, reused across blocks: no allocation per document once warm.
struct Encoder {
  const PreprocessOptions& o;
  const Tokenizer& tok;
  int32_t eod;
  prep::JsonFields fields{o.json_keys};
  std::vector<int32_t> ids;
  std::vector<std::string_view> sentences;

  void add_sequence(std::string_view text, KeyOutput& out) {
    tok.encode(text, ids);
    if (ids.empty()) return;  // Megatron drops sequences that tokenize to nothing
    out.tokens.insert(out.tokens.end(), ids.begin(), ids.end());
    out.seq_lengths.push_back(static_cast<int32_t>(ids.size()));
  }

  void document(KeyOutput& out, size_t k) {
    const size_t before = out.seq_lengths.size();
    if (o.split_sentences) {
      if (fields.is_array(k))
        throw Error(cat("field '", o.json_keys[k], "' is already split into sentences (an array of strings)",
                        "\nHINT: drop --split-sentences for pre-split input"));
      sentences.clear();
      prep::split_sentences(fields.values(k)[0], o.keep_newlines, sentences);
      for (const auto& s : sentences) add_sequence(s, out);
    } else {
      for (const auto& v : fields.values(k)) add_sequence(v, out);
    }
    const size_t n = out.seq_lengths.size() - before;
    // Megatron appends EOD to the last sequence of non-empty documents only.
    if (n > 0 && o.append_eod) {
      out.tokens.push_back(eod);
      ++out.seq_lengths.back();
    }
    out.doc_seqs.push_back(static_cast<int32_t>(n));
  }

  void encode(Chunk& c, const std::string& file) {
    c.out.resize(o.json_keys.size());
    for (auto& x : c.out) x.clear();
    c.documents = c.blank = 0;
    c.error.clear();
    const char* p = c.block.text.data();
    const char* const end = p + c.block.text.size();
    for (int64_t line_no = c.block.first_line; p < end; ++line_no) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
      std::string_view line(p, static_cast<size_t>(nl - p));
      p = nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // CRLF, as Python's text mode
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
        ++c.blank;
        continue;
      }
      try {
        fields.parse(line);
        for (size_t k = 0; k < o.json_keys.size(); ++k) document(c.out[k], k);
      } catch (const std::exception& e) {
        c.error = cat(file, ":", line_no, ": ", e.what());
        return;
      }
      ++c.documents;
    }
    // A huge line leaves a huge id buffer; give it back rather than carry it.
    if (ids.capacity() > (size_t{4} << 20)) std::vector<int32_t>().swap(ids);
  }
};

ConfigSection tokenizer_config(const PreprocessOptions& o) {
  ConfigSection s;
  s.file = "preprocess flags";
  s.name = "tokenizer";
  if (!o.vocab_file.empty()) s.table->insert("vocab_file", o.vocab_file);
  if (!o.merge_file.empty()) s.table->insert("merge_file", o.merge_file);
  if (!o.tokenizer_model.empty()) s.table->insert("tokenizer_model", o.tokenizer_model);
  if (o.vocab_size >= 0) s.table->insert("vocab_size", o.vocab_size);
  if (o.vocab_extra_ids >= 0) s.table->insert("vocab_extra_ids", o.vocab_extra_ids);
  return s;
}

std::string format_eta(double s) {
  if (s >= 3600) return cat(static_cast<int64_t>(s / 3600), "h", static_cast<int64_t>(s / 60) % 60, "m");
  if (s >= 60) return cat(static_cast<int64_t>(s / 60), "m", static_cast<int64_t>(s) % 60, "s");
  return cat(static_cast<int64_t>(s + 0.5), "s");
}

}  // namespace

PreprocessStats preprocess(const PreprocessOptions& o, const PluginRegistry& reg) {
  MH_CORE_CHECK(!o.inputs.empty(), "preprocess: --input is required");
  MH_CORE_CHECK(!o.output_prefix.empty(), "preprocess: --output-prefix is required");
  MH_CORE_CHECK(!o.tokenizer_type.empty(), "preprocess: --tokenizer-type is required\nHINT: e.g. GPT2BPETokenizer");
  MH_CORE_CHECK(o.workers >= 1, "preprocess: --workers must be >= 1");
  MH_CORE_CHECK(!o.json_keys.empty(), "preprocess: --json-keys is empty");
  MH_CORE_CHECK(!o.keep_newlines || o.split_sentences,
                "preprocess: --keep-newlines only applies with --split-sentences\nHINT: add --split-sentences");
  const std::vector<std::string> files = prep::expand_inputs(o.inputs);
  prep::LineBlocks blocks(files, kBlockBytes);  // checks every file up front
  const double total_bytes = static_cast<double>(blocks.total_input_bytes());
  const std::string input_names = files.size() == 1 ? files[0] : cat(files.size(), " input files");

  auto tok = reg.create_tokenizer(o.tokenizer_type, tokenizer_config(o));
  const int64_t vocab = tok->vocab_size();
  int32_t eod = -1;
  if (o.append_eod) {
    auto e = tok->special_token(MH_TOKEN_EOD);
    MH_CORE_CHECK(e.has_value(), "tokenizer '", tok->id(), "' has no end-of-document token\nHINT: drop --append-eod");
    eod = *e;
  }
  // Megatron: uint16 when the vocabulary is below 65,500, else int32.
  const mh_token_dtype dtype = vocab < 65500 ? MH_DTYPE_UINT16 : MH_DTYPE_INT32;
  auto format = reg.create_dataset(o.dataset_format, ConfigSection{});
  std::vector<std::unique_ptr<DatasetWriter>> writers;
  PreprocessStats stats;
  const char* level = o.split_sentences ? "sentence" : "document";
  for (const auto& key : o.json_keys) {
    const std::string prefix = cat(o.output_prefix, "_", key, "_", level);
    writers.push_back(format->open_writer(prefix, dtype));
    stats.outputs.push_back(prefix);
  }

  // Work queue: chunks in input order; workers take the next unclaimed chunk.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::shared_ptr<Chunk>> window;  // in input order, at most max_in_flight
  std::vector<std::shared_ptr<Chunk>> spare;  // written chunks, buffers kept for reuse
  size_t next_to_encode = 0;                  // index into window of the next unclaimed chunk
  bool input_done = false, failed = false;
  const size_t max_in_flight = static_cast<size_t>(o.workers) * 4;

  auto worker = [&]() {
    Encoder enc{o, *tok, eod};
    for (;;) {
      std::shared_ptr<Chunk> c;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return failed || next_to_encode < window.size() || input_done; });
        if (failed) return;
        if (next_to_encode >= window.size()) {
          if (input_done) return;
          continue;
        }
        c = window[next_to_encode++];
      }
      try {
        enc.encode(*c, blocks.file(c->block.file));
      } catch (const std::exception& e) {
        c->error = e.what();
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        c->done = true;
      }
      cv.notify_all();
    }
  };

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int i = 0; i < o.workers; ++i) pool.emplace_back(worker);
  std::string error;
  int64_t next_report = o.log_interval > 0 ? o.log_interval : INT64_MAX;
  try {
    for (;;) {
      // Fill the window, then write finished chunks from its front, in order.
      std::unique_lock<std::mutex> lock(mu);
      while (!input_done && window.size() < max_in_flight) {
        std::shared_ptr<Chunk> c;
        if (spare.empty()) {
          c = std::make_shared<Chunk>();
        } else {
          c = std::move(spare.back());
          spare.pop_back();
        }
        c->done = false;
        lock.unlock();
        const bool got = blocks.next(c->block);
        lock.lock();
        if (!got) {
          input_done = true;
        } else {
          window.push_back(std::move(c));
        }
        cv.notify_all();
      }
      if (window.empty()) break;
      cv.wait(lock, [&] { return window.front()->done; });
      auto c = window.front();
      window.pop_front();
      --next_to_encode;
      lock.unlock();
      if (!c->error.empty()) throw Error(c->error);
      stats.skipped_blank_lines += c->blank;
      for (size_t k = 0; k < writers.size(); ++k) {
        const KeyOutput& out = c->out[k];
        const int32_t* tokens = out.tokens.data();
        size_t seq = 0;
        for (const int32_t n_seqs : out.doc_seqs) {
          for (int32_t s = 0; s < n_seqs; ++s, ++seq) {
            const auto len = static_cast<size_t>(out.seq_lengths[seq]);
            writers[k]->add_sequence(tokens, len);
            tokens += len;
          }
          writers[k]->end_document();  // an empty document still ends a document (as Megatron)
        }
        stats.tokens += static_cast<int64_t>(out.tokens.size());
      }
      stats.documents += c->documents;
      stats.bytes += static_cast<double>(c->block.text.size());
      if (stats.documents >= next_report) {
        while (next_report <= stats.documents) next_report += o.log_interval;
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        // Share done: input bytes on disk consumed (compressed for .gz/.zst) over their total.
        std::string share;
        if (total_bytes > 0) {
          const double done = static_cast<double>(c->block.input_bytes_done) / total_bytes;
          share = cat(", ", static_cast<int>(100 * done), "% of input");
          if (done > 0 && done < 1) share += cat(", ETA ", format_eta(s * (1 - done) / done));
        }
        spdlog::info("preprocess: {} documents, {:.2f} MB/s, {:.2f} M tokens/s{}", stats.documents,
                     stats.bytes / s / 1e6, static_cast<double>(stats.tokens) / s / 1e6, share);
      }
      lock.lock();
      spare.push_back(std::move(c));
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    failed = true;
    input_done = true;
  }
  cv.notify_all();
  for (auto& t : pool) t.join();
  MH_CORE_CHECK(error.empty(), error);  // writers abort (remove partial output) in their destructors
  for (auto& w : writers) w->finalize();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (stats.skipped_blank_lines > 0)
    spdlog::warn("{}: skipped {} blank lines", input_names, stats.skipped_blank_lines);
  return stats;
}

}  // namespace megahost::core
