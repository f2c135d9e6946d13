// The layout-free part of a checkpoint (see checkpoint_reshard.h).
#include "megahost/core/engine/checkpoint_reshard.h"

#include <algorithm>

#include "megahost/core/engine/checkpoint_inspect.h"
#include "megahost/core/error.h"

namespace megahost::core {

std::vector<int64_t> ShardSlice::local_shape() const {
  if (flat()) return {flat_numel};
  std::vector<int64_t> out = lengths;
  if (glu_dim >= 0) out[glu_dim] *= 2;
  return out;
}

bool ShardSlice::same_region(const ShardSlice& o) const {
  return global_shape == o.global_shape && offsets == o.offsets && lengths == o.lengths && glu_dim == o.glu_dim &&
         flat_offset == o.flat_offset && flat_numel == o.flat_numel;
}

nlohmann::json slice_to_json(const ShardSlice& s) {
  nlohmann::json j = {{"global_shape", s.global_shape}, {"offsets", s.offsets}, {"lengths", s.lengths}};
  if (s.glu_dim >= 0) j["glu_dim"] = s.glu_dim;
  if (s.flat()) j["flat"] = {s.flat_offset, s.flat_numel};
  return j;
}

ShardSlice slice_from_json(const nlohmann::json& j, const std::string& where) {
  ShardSlice s;
  try {
    s.global_shape = j.at("global_shape").get<std::vector<int64_t>>();
    s.offsets = j.at("offsets").get<std::vector<int64_t>>();
    s.lengths = j.at("lengths").get<std::vector<int64_t>>();
    s.glu_dim = j.value("glu_dim", -1);
    if (j.contains("flat")) {
      s.flat_offset = j["flat"].at(0).get<int64_t>();
      s.flat_numel = j["flat"].at(1).get<int64_t>();
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(cat(where, ": malformed slice record (", e.what(), ")\nHINT: the checkpoint is damaged"));
  }
  const size_t n = s.global_shape.size();
  bool ok = s.offsets.size() == n && s.lengths.size() == n && s.glu_dim < static_cast<int32_t>(n);
  for (size_t d = 0; ok && d < n; ++d) {
    const int64_t extent = static_cast<int32_t>(d) == s.glu_dim ? s.global_shape[d] / 2 : s.global_shape[d];
    ok = s.offsets[d] >= 0 && s.lengths[d] >= 0 && s.offsets[d] + s.lengths[d] <= extent;
  }
  MH_CORE_CHECK(ok, where, ": slice record outside its global shape ", at::IntArrayRef(s.global_shape),
                "\nHINT: the checkpoint is damaged");
  return s;
}

ShardSlice full_slice(const std::vector<int64_t>& shape) {
  ShardSlice s;
  s.global_shape = shape;
  s.offsets.assign(shape.size(), 0);
  s.lengths = shape;
  return s;
}

ShardSlice tp_slice(const std::vector<int64_t>& local, int32_t dim, bool glu_halves, int rank, int size) {
  ShardSlice s = full_slice(local);
  if (dim < 0) return s;
  const int64_t part = glu_halves ? local[dim] / 2 : local[dim];
  s.global_shape[dim] = local[dim] * size;
  s.offsets[dim] = part * rank;
  s.lengths[dim] = part;
  if (glu_halves) s.glu_dim = dim;
  return s;
}

namespace {

// The box of `global` (contiguous, global_shape) the slice covers, as a view; with GLU halves the
// halves dim is split in two ([.., 2, half, ..]).
at::Tensor box_view(const at::Tensor& global, const ShardSlice& s) {
  MH_CORE_CHECK(global.sizes().vec() == s.global_shape, "slice of global shape ", at::IntArrayRef(s.global_shape),
                " applied to a tensor of shape ", global.sizes(), "\nHINT: internal resharding error");
  at::Tensor v = global;
  std::vector<int64_t> split = s.global_shape;
  if (s.glu_dim >= 0) {
    split[s.glu_dim] = s.global_shape[s.glu_dim] / 2;
    split.insert(split.begin() + s.glu_dim, 2);
    v = global.view(split);
  }
  for (size_t d = 0; d < s.global_shape.size(); ++d) {
    const int64_t vd = static_cast<int64_t>(d) + (s.glu_dim >= 0 && static_cast<int32_t>(d) >= s.glu_dim ? 1 : 0);
    v = v.narrow(vd, s.offsets[d], s.lengths[d]);
  }
  return v;
}

}  // namespace

at::Tensor extract_slice(const at::Tensor& global, const ShardSlice& s) {
  at::Tensor box = box_view(global, s).contiguous();
  if (!s.flat()) return box.reshape(s.local_shape());
  return box.view(-1).narrow(0, s.flat_offset, s.flat_numel).clone();
}

void place_slice(at::Tensor& global, const ShardSlice& s, const at::Tensor& piece) {
  at::Tensor box = box_view(global, s);
  if (!s.flat()) {
    box.copy_(piece.reshape(box.sizes()));
    return;
  }
  at::Tensor whole = box.contiguous();  // read-modify-write: the flat range is part of the box
  whole.view(-1).narrow(0, s.flat_offset, s.flat_numel).copy_(piece.reshape(-1));
  box.copy_(whole);
}

bool is_vocab_tensor(const std::string& entry) {
  for (const char* base : {"embedding.word_embeddings.weight", "output_layer.weight"}) {
    const size_t at = entry.find(base);
    if (at != std::string::npos && (at == 0 || entry[at - 1] == '/')) return true;
  }
  return false;
}

at::Tensor fit_rows(const at::Tensor& t, int64_t rows) {
  if (t.size(0) >= rows) return t.narrow(0, 0, rows);
  std::vector<int64_t> shape = t.sizes().vec();
  shape[0] = rows;
  at::Tensor out = at::zeros(shape, t.options());
  out.narrow(0, 0, t.size(0)).copy_(t);
  return out;
}

RankPlacement::RankPlacement(const std::vector<Model*>& chunks, int tp_rank, int tp_size,
                             const std::map<std::string, std::pair<int64_t, int64_t>>& flat_shards)
    : flat_(flat_shards) {
  for (Model* m : chunks)
    for (const Param& p : m->params())
      params_[p.name] = tp_slice(p.data.sizes().vec(), p.tensor_parallel_dim,
                                 (p.flags & MH_PARAM_TP_GLU_HALVES) != 0, tp_rank, tp_size);
}

std::optional<ShardSlice> RankPlacement::slice_of(const std::string& entry, const std::vector<int64_t>& shape) const {
  auto starts = [&](const char* prefix) { return entry.rfind(prefix, 0) == 0; };
  if (starts("model/")) {
    auto it = params_.find(entry.substr(6));
    if (it == params_.end() || it->second.local_shape() != shape) return std::nullopt;
    return it->second;
  }
  if (!starts("optimizer/")) return std::nullopt;
  const std::string name = entry.substr(10);
  const size_t dot = name.rfind('.');
  auto it = dot == std::string::npos ? params_.end() : params_.find(name.substr(0, dot));
  if (it == params_.end()) return full_slice(shape);  // not per parameter (step, loss scaler): replicated
  if (it->second.local_shape() == shape) return it->second;
  auto flat = flat_.find(it->first);
  if (flat == flat_.end() || shape != std::vector<int64_t>{flat->second.second}) return std::nullopt;
  ShardSlice s = it->second;
  s.flat_offset = flat->second.first;
  s.flat_numel = flat->second.second;
  return s;
}

ShardedCheckpoint::ShardedCheckpoint(CheckpointFormat& fmt, const std::string& iter_dir) : iter_dir_(iter_dir) {
  folders_ = checkpoint_rank_folders(iter_dir);
  for (size_t f = 0; f < folders_.size(); ++f) {
    readers_.push_back(fmt.open_reader(folders_[f]));
    std::map<std::string, CheckpointEntry> entries;
    for (auto& e : readers_[f]->list()) entries[e.name] = e;
    metas_.push_back(entries.count("meta.json") != 0
                         ? nlohmann::json::parse(readers_[f]->blob("meta.json"), nullptr, false)
                         : nlohmann::json::object());
    if (entries.count(kShardsBlob) == 0) {
      if (folders_.size() == 1 && folders_[0] == iter_dir) {
        // Saved by one process before shards.json existed: every tensor is whole.
        for (const auto& [name, e] : entries)
          if (!e.is_blob) pieces_[name].push_back({f, full_slice(e.shape), e.dtype});
      } else if (why_not_layout_free_.empty()) {
        why_not_layout_free_ = cat(folders_[f], " has no ", kShardsBlob, " (saved before the layout-free format)");
      }
      continue;
    }
    const std::string where = cat(folders_[f], ": ", kShardsBlob);
    const auto shards = nlohmann::json::parse(readers_[f]->blob(kShardsBlob), nullptr, false);
    MH_CORE_CHECK(shards.is_object() && shards.contains("tensors"), where,
                  ": not valid JSON with a \"tensors\" object\nHINT: the checkpoint is damaged");
    for (const auto& [name, j] : shards["tensors"].items()) {
      auto e = entries.find(name);
      MH_CORE_CHECK(e != entries.end() && !e->second.is_blob, where, ": names '", name,
                    "', which the folder does not hold\nHINT: the checkpoint is damaged");
      Piece p{f, slice_from_json(j, cat(where, ": '", name, "'")), e->second.dtype};
      MH_CORE_CHECK(p.slice.local_shape() == e->second.shape, where, ": '", name, "' is stored with shape ",
                    at::IntArrayRef(e->second.shape), " but its slice record says ",
                    at::IntArrayRef(p.slice.local_shape()), "\nHINT: the checkpoint is damaged");
      pieces_[name].push_back(std::move(p));
    }
  }
}

std::vector<std::string> ShardedCheckpoint::entries() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : pieces_) out.push_back(name);
  return out;
}

const std::vector<ShardedCheckpoint::Piece>& ShardedCheckpoint::pieces(const std::string& entry) const {
  auto it = pieces_.find(entry);
  MH_CORE_CHECK(it != pieces_.end(), iter_dir_, ": no rank folder holds '", entry,
                "'\nHINT: the model or optimizer configuration differs from the one that saved this checkpoint");
  return it->second;
}

namespace {

// The pieces to read for a global tensor: one per region, the lowest folder's (TP-duplicated
// norms, tied embeddings on two stages and replicated optimizer scalars are stored several times).
std::vector<const ShardedCheckpoint::Piece*> distinct_regions(const std::vector<ShardedCheckpoint::Piece>& all) {
  std::vector<const ShardedCheckpoint::Piece*> out;
  for (const auto& p : all) {
    bool seen = false;
    for (const auto* q : out) seen = seen || q->slice.same_region(p.slice);
    if (!seen) out.push_back(&p);
  }
  return out;
}

// Per dim, the [begin, end) of the global tensor a slice touches (GLU halves: the span from the
// first half's part to the second's, a superset).
std::vector<std::pair<int64_t, int64_t>> span_of(const ShardSlice& s) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (size_t d = 0; d < s.global_shape.size(); ++d) {
    const int64_t extra = static_cast<int32_t>(d) == s.glu_dim ? s.global_shape[d] / 2 : 0;
    out.emplace_back(s.offsets[d], s.offsets[d] + s.lengths[d] + extra);
  }
  return out;
}

bool overlaps(const ShardSlice& a, const ShardSlice& b) {
  const auto sa = span_of(a), sb = span_of(b);
  for (size_t d = 0; d < sa.size(); ++d)
    if (sa[d].first >= sb[d].second || sb[d].first >= sa[d].second) return false;
  return true;
}

std::string uncovered(const at::Tensor& mask, const std::string& iter_dir, const std::string& entry) {
  const int64_t covered = mask.sum().item<int64_t>();
  if (covered == mask.numel()) return "";
  return cat(iter_dir, ": '", entry, "': the rank folders hold ", covered, " of its ", mask.numel(),
             " elements (global shape ", mask.sizes(), ")");
}

}  // namespace

std::string ShardedCheckpoint::coverage_problem(const std::string& entry) const {
  const auto regions = distinct_regions(pieces(entry));
  const std::vector<int64_t>& shape = regions.front()->slice.global_shape;
  for (const auto* p : regions)
    if (p->slice.global_shape != shape)
      return cat(iter_dir_, ": '", entry, "': rank folders disagree on its global shape (",
                 at::IntArrayRef(shape), " vs ", at::IntArrayRef(p->slice.global_shape), " in ", folders_[p->folder],
                 ")");
  at::Tensor mask = at::zeros(shape, at::kInt);
  for (const auto* p : regions) place_slice(mask, p->slice, at::ones(p->slice.local_shape(), at::kInt));
  return uncovered(mask.clamp_max(1), iter_dir_, entry);
}

at::Tensor ShardedCheckpoint::read_region(const std::string& entry, const ShardSlice& target) {
  const auto regions = distinct_regions(pieces(entry));
  const std::vector<int64_t>& shape = regions.front()->slice.global_shape;
  MH_CORE_CHECK(shape == target.global_shape, iter_dir_, ": '", entry, "' has global shape ", at::IntArrayRef(shape),
                ", the slice to load is of ", at::IntArrayRef(target.global_shape),
                "\nHINT: internal resharding error");
  at::Tensor global = at::empty(shape, at::TensorOptions().dtype(regions.front()->dtype));
  at::Tensor mask = at::zeros(shape, at::kInt);
  for (const auto* p : regions) {
    if (p->slice.global_shape != shape || !overlaps(p->slice, target)) continue;
    at::Tensor piece = at::empty(p->slice.local_shape(), at::TensorOptions().dtype(p->dtype));
    try {
      readers_[p->folder]->tensor_into(entry, piece);
    } catch (const std::exception& e) {
      throw Error(cat(folders_[p->folder], ": entry '", entry, "': ", e.what()));
    }
    place_slice(global, p->slice, piece);
    place_slice(mask, p->slice, at::ones(p->slice.local_shape(), at::kInt));
  }
  const at::Tensor needed = extract_slice(mask, target);
  MH_CORE_CHECK(needed.numel() == 0 || needed.min().item<int>() > 0, iter_dir_, ": '", entry,
                "': the rank folders hold no piece for part of the slice [", at::IntArrayRef(target.offsets),
                " + ", at::IntArrayRef(target.lengths), "] this rank loads\nHINT: a rank folder is missing or the checkpoint is damaged");
  return global;
}

at::Tensor ShardedCheckpoint::read_global(const std::string& entry) {
  const std::string problem = coverage_problem(entry);
  MH_CORE_CHECK(problem.empty(), problem, "\nHINT: a rank folder is missing or the checkpoint is damaged");
  const auto regions = distinct_regions(pieces(entry));
  at::Tensor global = at::empty(regions.front()->slice.global_shape, at::TensorOptions().dtype(regions.front()->dtype));
  for (const auto* p : regions) {
    at::Tensor piece = at::empty(p->slice.local_shape(), at::TensorOptions().dtype(p->dtype));
    try {
      readers_[p->folder]->tensor_into(entry, piece);
    } catch (const std::exception& e) {
      throw Error(cat(folders_[p->folder], ": entry '", entry, "': ", e.what()));
    }
    place_slice(global, p->slice, piece);
  }
  return global;
}

}  // namespace megahost::core
