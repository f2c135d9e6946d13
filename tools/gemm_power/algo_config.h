// tools/gemm_power — cuBLASLt algorithm configurations beyond the heuristic's: read and write one
// (algorithm id, tile, stages, cluster shape, CTA swizzle, custom option, inner shape, split-K),
// name it as text, and list the variations of a few heuristic results (for --explore).
//
// Why: for GPT-1.3B's products the heuristic returns 8 nvjet configurations (algorithm 66) out
// of the ~35,000 that algorithm reports supporting. Measured 2026-11-29 (docs/performance.md):
// none of the variations timed beat the heuristic's best hot, inside megahost on the call's own
// operands.
#pragma once

#include <cublasLt.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

namespace lt_config {

struct AlgoConfig {
  int32_t id = -1;
  uint32_t tile = 0, stages = 0, swizzle = 0, custom = 0;
  uint16_t cluster = 0, inner = 0;
  int32_t splitk = 1;
};

inline AlgoConfig read_config(const cublasLtMatmulAlgo_t& algo) {
  AlgoConfig c;
  size_t w = 0;
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_ID, &c.id, sizeof(c.id), &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &c.tile, sizeof(c.tile), &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &c.stages, sizeof(c.stages), &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &c.swizzle, sizeof(c.swizzle), &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &c.custom, sizeof(c.custom), &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &c.cluster, sizeof(c.cluster), &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, &c.inner, sizeof(c.inner), &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &c.splitk, sizeof(c.splitk), &w);
  return c;
}

// Sets every field but the id (an algorithm's id is fixed by cublasLtMatmulAlgoInit).
inline bool write_config(cublasLtMatmulAlgo_t* algo, const AlgoConfig& c) {
  return cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &c.tile, sizeof(c.tile)) == 0 &&
         cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &c.stages, sizeof(c.stages)) == 0 &&
         cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &c.swizzle, sizeof(c.swizzle)) == 0 &&
         cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &c.custom, sizeof(c.custom)) == 0 &&
         cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &c.cluster, sizeof(c.cluster)) == 0 &&
         cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, &c.inner, sizeof(c.inner)) == 0 &&
         cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &c.splitk, sizeof(c.splitk)) == 0;
}

// "id tile stages cluster swizzle custom inner splitk": the tuning file's format too.
inline std::string config_text(const AlgoConfig& c) {
  char s[128];
  std::snprintf(s, sizeof(s), "%d %u %u %u %u %u %u %d", c.id, c.tile, c.stages, static_cast<unsigned>(c.cluster),
                c.swizzle, c.custom, static_cast<unsigned>(c.inner), c.splitk);
  return s;
}

inline bool parse_config(const char* text, AlgoConfig* c) {
  unsigned cluster = 0, inner = 0;
  if (std::sscanf(text, "%d %u %u %u %u %u %u %d", &c->id, &c->tile, &c->stages, &cluster, &c->swizzle, &c->custom,
                  &inner, &c->splitk) != 8)
    return false;
  c->cluster = static_cast<uint16_t>(cluster), c->inner = static_cast<uint16_t>(inner);
  return true;
}

inline std::vector<uint32_t> cap_array(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoCapAttributes_t attr) {
  size_t bytes = 0;
  if (cublasLtMatmulAlgoCapGetAttribute(&algo, attr, nullptr, 0, &bytes) != CUBLAS_STATUS_SUCCESS || bytes == 0) return {};
  std::vector<uint32_t> v(bytes / sizeof(uint32_t));
  cublasLtMatmulAlgoCapGetAttribute(&algo, attr, v.data(), bytes, &bytes);
  return v;
}

// Every variation of the first `bases` results (tile x stages x cluster x swizzle x custom option,
// over what each algorithm reports supporting), none equal to one of the results themselves, in a
// fixed shuffled order so a time budget samples the whole space. Unchecked: run
// cublasLtMatmulAlgoCheck before launching one.
inline std::vector<cublasLtMatmulAlgo_t> variations(const cublasLtMatmulHeuristicResult_t* results, int found,
                                                    int bases) {
  static const uint16_t kClusters[] = {CUBLASLT_CLUSTER_SHAPE_AUTO, CUBLASLT_CLUSTER_SHAPE_1x1x1,
                                       CUBLASLT_CLUSTER_SHAPE_2x1x1, CUBLASLT_CLUSTER_SHAPE_1x2x1,
                                       CUBLASLT_CLUSTER_SHAPE_2x2x1, CUBLASLT_CLUSTER_SHAPE_4x1x1,
                                       CUBLASLT_CLUSTER_SHAPE_1x4x1};
  std::vector<cublasLtMatmulAlgo_t> out;
  std::set<std::string> seen;
  for (int i = 0; i < found; ++i) seen.insert(config_text(read_config(results[i].algo)));
  for (int base = 0; base < std::min(found, bases); ++base) {
    const cublasLtMatmulAlgo_t& algo0 = results[base].algo;
    const AlgoConfig c0 = read_config(algo0);
    std::vector<uint32_t> tiles = cap_array(algo0, CUBLASLT_ALGO_CAP_TILE_IDS);
    std::vector<uint32_t> stages = cap_array(algo0, CUBLASLT_ALGO_CAP_STAGES_IDS);
    if (tiles.empty()) tiles.assign(1, c0.tile);
    if (stages.empty() || stages.size() > 24) stages.assign(1, c0.stages);
    uint32_t swizzle_ok = 0;
    int32_t custom_max = 0;
    size_t w = 0;
    cublasLtMatmulAlgoCapGetAttribute(&algo0, CUBLASLT_ALGO_CAP_CTA_SWIZZLING_SUPPORT, &swizzle_ok, sizeof(swizzle_ok), &w);
    cublasLtMatmulAlgoCapGetAttribute(&algo0, CUBLASLT_ALGO_CAP_CUSTOM_OPTION_MAX, &custom_max, sizeof(custom_max), &w);
    for (uint32_t tile : tiles)
      for (uint32_t stage : stages)
        for (uint16_t cluster : kClusters)
          for (uint32_t swizzle = 0; swizzle <= (swizzle_ok ? 1u : 0u); ++swizzle)
            for (int32_t custom = 0; custom <= std::min(custom_max, 7); ++custom) {
              AlgoConfig c = c0;
              c.tile = tile, c.stages = stage, c.cluster = cluster, c.swizzle = swizzle;
              c.custom = static_cast<uint32_t>(custom);
              cublasLtMatmulAlgo_t algo = algo0;
              if (!write_config(&algo, c)) continue;
              if (seen.insert(config_text(read_config(algo))).second) out.push_back(algo);
            }
  }
  uint64_t h = 88172645463325252ull;  // Fisher-Yates with xorshift64: the same order every run
  for (size_t i = out.size(); i > 1; --i) {
    h ^= h << 13, h ^= h >> 7, h ^= h << 17;
    std::swap(out[i - 1], out[h % i]);
  }
  return out;
}

}  // namespace lt_config
