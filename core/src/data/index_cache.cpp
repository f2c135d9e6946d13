// GPT index cache: Megatron-Core's file layout, atomic writes, validated mapped reads.
#include "megahost/core/data/index_cache.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "megahost/core/data/md5.h"
#include "megahost/core/data/npy.h"
#include "megahost/core/error.h"

namespace megahost::core::data {

namespace fs = std::filesystem;

namespace {

const char* const kClass = "GPTDataset";

void say(const IndexCacheOptions& o, LogLevel level, const std::string& msg) {
  if (o.log) o.log(level, msg);
}

int64_t tokens_in(const std::vector<int32_t>& lengths, SequenceRange r) {
  int64_t t = 0;
  for (int64_t i = r.begin; i < r.end; ++i) t += lengths[static_cast<size_t>(i)];
  return t;
}

// Megatron's split_matrix: [lo, hi] per split, null for a zero weight.
nlohmann::json split_matrix(const std::string& split) {
  if (split.empty()) return nullptr;
  const auto w = parse_split(split);
  const double bound[4] = {0.0, w[0], w[0] + w[1], (w[0] + w[1]) + w[2]};
  nlohmann::json m = nlohmann::json::array();
  for (int k = 0; k < 3; ++k)
    m.push_back(bound[k + 1] <= bound[k] ? nlohmann::json(nullptr) : nlohmann::json::array({bound[k], bound[k + 1]}));
  return m;
}

// Three validated arrays, or the reason they are unusable.
struct Loaded {
  std::optional<GPTIndices> indices;
  std::string problem;
};

std::string files_of(const std::string& base) {
  return cat(base, "{document_index,sample_index,shuffle_index}.npy and ", base, "description.txt");
}

bool all_exist(const std::string& base) {
  for (const char* s : {"description.txt", "document_index.npy", "sample_index.npy", "shuffle_index.npy"})
    if (!fs::is_regular_file(base + s)) return false;
  return true;
}

IndexArray::DType index_dtype(NpyDType t) {
  switch (t) {
    case NpyDType::Int32: return IndexArray::DType::Int32;
    case NpyDType::UInt32: return IndexArray::DType::UInt32;
    case NpyDType::Int64: return IndexArray::DType::Int64;
    default: throw Error("unsupported index dtype");
  }
}

// Maps and checks the arrays at `base` against what this configuration must give: dtypes
// Megatron uses, shapes from the epoch plan, every value in range. Never throws.
Loaded load_arrays(const std::string& base, const std::vector<int32_t>& lengths, SequenceRange range,
                   const EpochPlan& plan) {
  Loaded out;
  try {
    const int64_t doc_size = plan.num_epochs * range.size();
    const int64_t n = plan.num_samples;

    auto doc = NpyFile::map(base + "document_index.npy");
    const NpyHeader& dh = doc->header();
    MH_CORE_CHECK(dh.dtype == NpyDType::Int32 && dh.shape == std::vector<int64_t>{doc_size}, doc->path(),
                  ": expected int32 (", doc_size, ",), found ", npy_dtype_name(dh.dtype), " with ", dh.shape.size(),
                  "-d shape of ", dh.count(), " values");
    const auto* d = static_cast<const int32_t*>(doc->data());
    GPTIndices ix;
    ix.plan = plan;
    ix.document_index.assign(d, d + doc_size);
    for (int64_t i = 0; i < doc_size; ++i)
      MH_CORE_CHECK(d[i] >= range.begin && d[i] < range.end, doc->path(), ": entry ", i, " = ", d[i],
                    " is outside the split's sequences [", range.begin, ", ", range.end, ")");

    auto smp = NpyFile::map(base + "sample_index.npy");
    const NpyHeader& sh = smp->header();
    MH_CORE_CHECK((sh.dtype == NpyDType::Int32 || sh.dtype == NpyDType::Int64) &&
                      sh.shape == (std::vector<int64_t>{n + 1, 2}),
                  smp->path(), ": expected int32 or int64 (", n + 1, ", 2), found ", npy_dtype_name(sh.dtype),
                  " of ", sh.count(), " values");
    ix.sample_index = IndexArray::from_mapped(smp->data(), static_cast<size_t>(2 * (n + 1)), index_dtype(sh.dtype), smp);
    const IndexArray& rows = ix.sample_index;
    MH_CORE_CHECK(rows[0] == 0 && rows[1] == 0, smp->path(), ": the first row is not (0, 0)");
    for (int64_t s = 1; s <= n; ++s) {
      const int64_t pos = rows[static_cast<size_t>(2 * s)], off = rows[static_cast<size_t>(2 * s + 1)];
      MH_CORE_CHECK(pos >= rows[static_cast<size_t>(2 * s - 2)] && pos < doc_size && off >= 0 &&
                        off <= lengths[static_cast<size_t>(d[pos])],
                    smp->path(), ": row ", s, " = (", pos, ", ", off, ") does not walk the document index");
    }

    auto shf = NpyFile::map(base + "shuffle_index.npy");
    const NpyHeader& fh = shf->header();
    MH_CORE_CHECK((fh.dtype == NpyDType::UInt32 || fh.dtype == NpyDType::Int64 || fh.dtype == NpyDType::Int32) &&
                      fh.shape == std::vector<int64_t>{n},
                  shf->path(), ": expected uint32 or int64 (", n, ",), found ", npy_dtype_name(fh.dtype), " of ",
                  fh.count(), " values");
    ix.shuffle_index = IndexArray::from_mapped(shf->data(), static_cast<size_t>(n), index_dtype(fh.dtype), shf);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = ix.shuffle_index[static_cast<size_t>(i)];
      MH_CORE_CHECK(v >= 0 && v < n, shf->path(), ": entry ", i, " = ", v, " is not a sample in [0, ", n, ")");
    }
    out.indices = std::move(ix);
  } catch (const std::exception& e) {
    out.problem = e.what();
  }
  return out;
}

// Whether a description written by Megatron (or by us) describes this configuration.
bool describes(const nlohmann::json& j, const std::string& dataset_path, SequenceRange range, int64_t num_sequences,
               const GPTIndexConfig& cfg, const IndexCacheOptions& o) {
  if (!j.is_object() || j.value("class", "") != kClass) return false;
  // Ours carry a "megahost" object and are found by their hash only: a description of ours
  // under another hash is another configuration (e.g. the same path with changed data).
  if (j.contains("megahost")) return false;
  if (j.value("index_split", "") != split_name(o.split)) return false;
  if (!j.contains("dataset_path") || !j["dataset_path"].is_string() ||
      fs::path(j["dataset_path"].get<std::string>()).filename() != fs::path(dataset_path).filename())
    return false;
  if (!j.contains("random_seed") || !j["random_seed"].is_number_integer() ||
      j["random_seed"].get<int64_t>() != static_cast<int64_t>(cfg.seed))
    return false;
  if (!j.contains("sequence_length") || !j["sequence_length"].is_number_integer() ||
      j["sequence_length"].get<int64_t>() != cfg.seq_length)
    return false;
  const auto& ns = j.contains("num_samples") ? j["num_samples"] : nlohmann::json(nullptr);
  if (cfg.num_samples ? !(ns.is_number_integer() && ns.get<int64_t>() == *cfg.num_samples) : !ns.is_null())
    return false;
  if (j.contains("add_extra_token_to_sequence") && j["add_extra_token_to_sequence"].is_boolean() &&
      j["add_extra_token_to_sequence"].get<bool>() != cfg.add_extra_token)
    return false;
  // The split's sequences: from split_matrix, else the split string, else the whole dataset.
  const int k = static_cast<int>(o.split);
  const double n = static_cast<double>(num_sequences);
  SequenceRange theirs{0, num_sequences};
  if (j.contains("split_matrix") && j["split_matrix"].is_array()) {
    const auto& m = j["split_matrix"];
    if (m.size() != 3 || !m[k].is_array() || m[k].size() != 2) return false;
    theirs = {static_cast<int64_t>(std::nearbyint(m[k][0].get<double>() * n)),
              static_cast<int64_t>(std::nearbyint(m[k][1].get<double>() * n))};
  } else if (j.contains("split") && j["split"].is_string()) {
    const auto r = split_sequence_ranges(j["split"].get<std::string>(), num_sequences)[k];
    if (!r) return false;
    theirs = *r;
  }
  return theirs == range;
}

std::optional<nlohmann::json> read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// A Megatron (or other) cache in the folder whose description matches; validated.
std::optional<CachedIndices> find_foreign(const std::string& own_base, const std::vector<int32_t>& lengths,
                                          SequenceRange range, const GPTIndexConfig& cfg, const EpochPlan& plan,
                                          const IndexCacheOptions& o) {
  std::error_code ec;
  if (!fs::is_directory(o.folder, ec)) return std::nullopt;
  const std::string suffix = cat("-", kClass, "-", split_name(o.split), "-description.txt");
  for (const auto& entry : fs::directory_iterator(o.folder, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const std::string base = entry.path().string().substr(0, entry.path().string().size() - std::string("description.txt").size());
    if (base == own_base || !all_exist(base)) continue;
    const auto j = read_json(entry.path().string());
    if (!j || !describes(*j, o.dataset_path, range, static_cast<int64_t>(lengths.size()), cfg, o)) continue;
    Loaded l = load_arrays(base, lengths, range, plan);
    if (!l.indices) {
      say(o, LogLevel::Warn, cat("ignoring the cached indices ", base, "*: ", l.problem));
      continue;
    }
    return CachedIndices{std::move(*l.indices), IndexOrigin::LoadedMegatron, base};
  }
  return std::nullopt;
}

void write_cache(const std::string& base, const std::string& description, const GPTIndices& ix) {
  const auto npy_of = [](IndexArray::DType t) {
    return t == IndexArray::DType::Int32 ? NpyDType::Int32 : t == IndexArray::DType::UInt32 ? NpyDType::UInt32
                                                                                           : NpyDType::Int64;
  };
  write_npy_atomic(base + "document_index.npy", NpyDType::Int32,
                   {static_cast<int64_t>(ix.document_index.size())}, ix.document_index.data());
  write_npy_atomic(base + "sample_index.npy", npy_of(ix.sample_index.dtype()),
                   {static_cast<int64_t>(ix.sample_index.size() / 2), 2}, ix.sample_index.data());
  write_npy_atomic(base + "shuffle_index.npy", npy_of(ix.shuffle_index.dtype()),
                   {static_cast<int64_t>(ix.shuffle_index.size())}, ix.shuffle_index.data());
  write_file_atomic(base + "description.txt", description);  // last: marks the set complete
}

}  // namespace

const char* origin_name(IndexOrigin o) {
  switch (o) {
    case IndexOrigin::Built: return "built";
    case IndexOrigin::BuiltUncached: return "built (not cached)";
    case IndexOrigin::Loaded: return "loaded cached indices";
    default: return "loaded Megatron's cached indices";
  }
}

std::string default_cache_folder(const std::string& prefix) {
  return (fs::path(prefix) / "cache" / (std::string(kClass) + "_indices")).string();
}

std::string gpt_description(const std::vector<int32_t>& lengths, SequenceRange range, const GPTIndexConfig& cfg,
                            const IndexCacheOptions& o, int64_t tokens_per_epoch) {
  // Megatron's keys in Megatron's order (an ordered JSON object), then what else the arrays
  // depend on: the sequence range and a fingerprint of the data, so changed files rebuild.
  nlohmann::ordered_json j;
  j["class"] = kClass;
  j["dataset_path"] = o.dataset_path;
  j["num_samples"] = cfg.num_samples ? nlohmann::ordered_json(*cfg.num_samples) : nlohmann::ordered_json(nullptr);
  j["index_split"] = split_name(o.split);
  j["random_seed"] = cfg.seed;
  j["sequence_length"] = cfg.seq_length;
  j["split"] = o.split_string.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(o.split_string);
  j["split_matrix"] = split_matrix(o.split_string);
  j["add_extra_token_to_sequence"] = cfg.add_extra_token;
  j["drop_last_partial_sequence"] = cfg.drop_last_partial;
  j["megahost"] = {{"cache_format", 1},
                   {"sequence_range", {range.begin, range.end}},
                   {"num_sequences", lengths.size()},
                   {"tokens_in_range", tokens_per_epoch}};
  return j.dump(4);
}

CachedIndices load_or_build_gpt_indices(const std::vector<int32_t>& lengths, SequenceRange range,
                                        const GPTIndexConfig& cfg, const std::string& what,
                                        const IndexCacheOptions& o) {
  MH_CORE_CHECK(range.begin >= 0 && range.begin <= range.end && range.end <= static_cast<int64_t>(lengths.size()),
                what, ": sequence range [", range.begin, ", ", range.end, ") outside the ", lengths.size(),
                " sequences of the corpus");
  if (o.folder.empty()) return {build_gpt_indices(lengths, range, cfg, what), IndexOrigin::BuiltUncached, ""};

  const int64_t tokens = tokens_in(lengths, range);
  const EpochPlan plan = plan_epochs(tokens, cfg, what);  // throws for an empty split, before any waiting
  const std::string description = gpt_description(lengths, range, cfg, o, tokens);
  const std::string base =
      (fs::path(o.folder) / cat(md5_hex(description), "-", kClass, "-", split_name(o.split), "-")).string();

  if (o.rank != 0 && o.world_size > 1) {
    // Rank 0 builds; wait for its files (or a matching Megatron cache).
    const auto start = std::chrono::steady_clock::now();
    std::string last_problem;
    for (;;) {
      if (all_exist(base)) {
        Loaded l = load_arrays(base, lengths, range, plan);
        if (l.indices) return {std::move(*l.indices), IndexOrigin::Loaded, base};
        last_problem = l.problem;  // rank 0 may be replacing a bad file: keep waiting
      }
      if (auto f = find_foreign(base, lengths, range, cfg, plan, o)) return std::move(*f);
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      MH_CORE_CHECK(waited < o.wait_seconds, what, ": rank ", o.rank, " waited ", o.wait_seconds,
                    " s for rank 0 to write the index cache ", files_of(base),
                    last_problem.empty() ? "" : cat(" (last problem: ", last_problem, ")"),
                    "\nHINT: rank 0 builds the indices; check its log, and that data_cache_path is one folder "
                    "shared by all ranks");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  if (all_exist(base)) {
    Loaded l = load_arrays(base, lengths, range, plan);
    if (l.indices) return {std::move(*l.indices), IndexOrigin::Loaded, base};
    say(o, LogLevel::Warn, cat(what, ": the cached indices are unusable and are rebuilt: ", l.problem));
  } else if (auto f = find_foreign(base, lengths, range, cfg, plan, o)) {
    return std::move(*f);
  }

  CachedIndices out{build_gpt_indices(lengths, range, cfg, what), IndexOrigin::Built, base};
  try {
    fs::create_directories(o.folder);
    write_cache(base, description, out.indices);
  } catch (const std::exception& e) {
    out.origin = IndexOrigin::BuiltUncached;
    say(o, LogLevel::Warn, cat(what, ": could not cache the indices in ", o.folder, ": ", e.what(),
                               "\nHINT: set [data] data_cache_path to a writable folder; every start rebuilds them "
                               "until then"));
  }
  return out;
}

}  // namespace megahost::core::data
