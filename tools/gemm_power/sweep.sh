#!/usr/bin/env bash
# Runs gemm_power_bench over the GPT-1.3B products (on the GPU machine). Extra arguments go to
# every run, e.g. `tools/gemm_power/sweep.sh --ws-ab --ms 200` or `--explore --budget-s 15`.
# SHAPES=name1,name2 limits the run to those lines.
set -euo pipefail
cd "$(dirname "$0")"
nvcc -O2 -std=c++17 -arch=sm_90 gemm_power_bench.cu -lcublasLt -o /tmp/gemm_power_bench
while read -r name args; do
  [[ -n "${SHAPES:-}" && ",$SHAPES," != *",$name,"* ]] && continue
  echo "### $name"
  # shellcheck disable=SC2086
  /tmp/gemm_power_bench $args "$@"
done <<'SHAPES'
fc1_fwd 16384 8192 2048 0 1 0 0
fc2_fwd 16384 2048 8192 0 1 0 0
qkv_fwd 16384 6144 2048 0 1 0 0
proj_fwd 16384 2048 2048 0 1 0 0
lm_fwd 16384 50304 2048 0 1 0 0
fc1_dgrad 16384 2048 8192 0 0 0 0
qkv_dgrad 16384 2048 6144 0 0 0 0
fc2_dgrad 16384 8192 2048 0 0 0 0 --dgelu
proj_dgrad 16384 2048 2048 0 0 0 0
lm_dgrad 16384 2048 50304 0 0 0 0
fc1_wgrad 8192 2048 16384 1 0 1 1
fc2_wgrad 2048 8192 16384 1 0 1 1
qkv_wgrad 6144 2048 16384 1 0 1 1
proj_wgrad 2048 2048 16384 1 0 1 1
lm_wgrad 50304 2048 16384 1 0 1 1
SHAPES
