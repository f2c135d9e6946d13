// JSON lines -> .bin/.idx. A reader splits the input into chunks of lines, workers parse and
// tokenize chunks in parallel, and the main thread writes chunks strictly in input order, so the
// output does not depend on the number of workers. Memory is bounded by the chunks in flight.
#include "megahost/core/preprocess.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "megahost/core/error.h"

namespace megahost::core {

namespace {

constexpr size_t kLinesPerChunk = 512;

struct Chunk {
  int64_t first_line = 0;  // 1-based line number of lines[0]
  std::vector<std::string> lines;
  // Per json key, per document, per sequence: token ids. A document is one sequence, or one per
  // sentence when the field is an array of strings (Megatron's pre-split input); sequences that
  // tokenize to nothing are dropped, and an empty document still ends a document.
  std::vector<std::vector<std::vector<std::vector<int32_t>>>> docs;
  int64_t blank = 0;
  std::string error;
  bool done = false;
};

ConfigSection tokenizer_config(const PreprocessOptions& o) {
  ConfigSection s;
  s.file = "preprocess flags";
  s.name = "tokenizer";
  if (!o.vocab_file.empty()) s.table->insert("vocab_file", o.vocab_file);
  if (!o.merge_file.empty()) s.table->insert("merge_file", o.merge_file);
  if (!o.tokenizer_model.empty()) s.table->insert("tokenizer_model", o.tokenizer_model);
  return s;
}

void encode_chunk(Chunk& c, const PreprocessOptions& o, const Tokenizer& tok, int32_t eod) {
  c.docs.assign(o.json_keys.size(), {});
  std::vector<int32_t> ids;
  for (size_t i = 0; i < c.lines.size(); ++i) {
    const std::string& line = c.lines[i];
    const int64_t line_no = c.first_line + static_cast<int64_t>(i);
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) {
      ++c.blank;
      continue;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      c.error = cat(o.input, ":", line_no, ": not valid JSON: ", e.what(),
                    "\nHINT: the input must be JSON lines, one object per line");
      return;
    }
    for (size_t k = 0; k < o.json_keys.size(); ++k) {
      const std::string& key = o.json_keys[k];
      const auto it = j.is_object() ? j.find(key) : j.end();
      const bool ok = it != j.end() && (it->is_string() || it->is_array());
      if (!ok) {
        c.error = cat(o.input, ":", line_no, ": no string field '", key, "'",
                      "\nHINT: pick the field with --json-keys (default: text)");
        return;
      }
      std::vector<std::vector<int32_t>> doc;
      auto add_sentence = [&](const nlohmann::json& v) {
        if (!v.is_string()) throw Error(cat(o.input, ":", line_no, ": field '", key, "' must hold strings"));
        tok.encode(v.get_ref<const std::string&>(), ids);
        if (!ids.empty()) doc.push_back(ids);
      };
      if (it->is_string()) {
        add_sentence(*it);
      } else {
        for (const auto& v : *it) add_sentence(v);
      }
      // Megatron appends EOD to the last sequence of non-empty documents only.
      if (!doc.empty() && o.append_eod) doc.back().push_back(eod);
      c.docs[k].push_back(std::move(doc));
    }
    std::string().swap(c.lines[i]);
  }
}

}  // namespace

PreprocessStats preprocess(const PreprocessOptions& o, const PluginRegistry& reg) {
  MH_CORE_CHECK(!o.input.empty(), "preprocess: --input is required");
  MH_CORE_CHECK(!o.output_prefix.empty(), "preprocess: --output-prefix is required");
  MH_CORE_CHECK(!o.tokenizer_type.empty(), "preprocess: --tokenizer-type is required\nHINT: e.g. GPT2BPETokenizer");
  MH_CORE_CHECK(o.workers >= 1, "preprocess: --workers must be >= 1");
  std::ifstream in(o.input, std::ios::binary);
  MH_CORE_CHECK(in.good(), o.input, ": cannot open input\nHINT: check the path given to --input");

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
  for (const auto& key : o.json_keys) {
    const std::string prefix = cat(o.output_prefix, "_", key, "_document");
    writers.push_back(format->open_writer(prefix, dtype));
    stats.outputs.push_back(prefix);
  }

  // Work queue: chunks in input order; workers take the next unclaimed chunk.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::shared_ptr<Chunk>> window;  // in input order, at most max_in_flight
  size_t next_to_encode = 0;                  // index into window of the next unclaimed chunk
  bool input_done = false, failed = false;
  const size_t max_in_flight = static_cast<size_t>(o.workers) * 4;
  int64_t line_no = 0;

  auto read_chunk = [&]() -> std::shared_ptr<Chunk> {
    auto c = std::make_shared<Chunk>();
    c->first_line = line_no + 1;
    std::string line;
    while (c->lines.size() < kLinesPerChunk && std::getline(in, line)) {
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF input, as Python's text mode
      stats.bytes += static_cast<double>(line.size() + 1);
      c->lines.push_back(std::move(line));
    }
    return c->lines.empty() ? nullptr : c;
  };

  auto worker = [&]() {
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
        encode_chunk(*c, o, *tok, eod);
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
  int64_t last_report = 0;
  try {
    for (;;) {
      // Fill the window, then write finished chunks from its front, in order.
      std::unique_lock<std::mutex> lock(mu);
      while (!input_done && window.size() < max_in_flight) {
        lock.unlock();
        auto c = read_chunk();
        lock.lock();
        if (!c) {
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
      cv.notify_all();
      if (!c->error.empty()) throw Error(c->error);
      stats.skipped_blank_lines += c->blank;
      for (size_t k = 0; k < writers.size(); ++k) {
        for (const auto& doc : c->docs[k]) {
          for (const auto& seq : doc) {
            writers[k]->add_sequence(seq.data(), seq.size());
            stats.tokens += static_cast<int64_t>(seq.size());
          }
          writers[k]->end_document();  // an empty document still ends a document (as Megatron)
        }
      }
      stats.documents += static_cast<int64_t>(c->docs.empty() ? 0 : c->docs[0].size());
      if (stats.documents - last_report >= o.log_interval) {
        last_report = stats.documents;
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        spdlog::info("processed {} documents ({:.1f} docs/s, {:.2f} MB/s)", stats.documents, stats.documents / s,
                     stats.bytes / s / 1e6);
      }
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
    spdlog::warn("{}: skipped {} blank lines", o.input, stats.skipped_blank_lines);
  return stats;
}

}  // namespace megahost::core
