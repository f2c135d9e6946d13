#!/usr/bin/env bash
# The GPU check, run ON the GPU machine from the repository root (Ubuntu 24.04, PyTorch 2.x wheel
# with CUDA, no package registry). Prepare first, on a machine with apt: scripts/gpu_deps.sh, and
# bring .gpu-deps/ and .data/ along (device tool: carry [".gpu-deps", ".data"]).
#
#   1. unpacks .gpu-deps/debs/*.deb (toml++, dlpack, nlohmann-json) into .gpu-deps/prefix
#   2. configures build-gpu/ against PyTorch's libtorch (torch.utils.cmake_prefix_path), CUDA on
#   3. builds every target, 4. runs ctest (GPU tests included; libstdc++ preloaded, see below),
#   5. benchmarks, in the same call: the PyTorch reference (.gpu-deps/bench/gpt_baseline.py: eager
#      and torch.compile, bf16 autocast; tools/llama_baseline/llama_baseline.py for the Llama-style
#      shape) and `megahost bench` on examples/gpt/bench_{gpt345m,gpt1.3b,llama1.3b}.toml (bf16),
#      then a table of the ratios (tokens/s per GPU, peak memory)
#
# Env: MEGAHOST_GPU_BUILD_DIR (build-gpu), MEGAHOST_GPU_BUILD_TYPE (RelWithDebInfo), MEGAHOST_JOBS (nproc), SKIP_TESTS=1, SKIP_BENCH=1,
#      MEGAHOST_GPU_TARGETS (build only these targets, e.g. the bench's: "megahost megahost_model_gpt ..."),
#      BASELINE_CONFIGS (gpt_baseline.py arguments), LLAMA_BASELINE_CONFIGS (llama_baseline.py's;
#      empty: skipped), BENCH_RUNS / BENCH_EXTRA (lines label|recipe|args),
#      CTEST_REGEX (run only the matching ctest entries: one per GoogleTest suite, e.g. "DpCuda|Fused"),
#      CTEST_TIME_LIMIT (300 s for the whole ctest run), CKPT_BENCH=1 (checkpoint save/load GB/s of
#      the GPT-1.3B recipe, CKPT_DIR for where), MODELS_GPU=1 (BERT and T5 on CUDA: tiny recipes
#      learning, bert_340m / t5_220m benchmarks eager and with CUDA graphs; MODELS_BENCH_EXTRA adds
#      bench arguments),
#      MULTI_GPU=N (data parallelism over N GPUs: DDP reference and megahost launch, MULTI_GPU_RUNS /
#      MULTI_GPU_BASELINE), LOG_DIR (default $OUT when set, else build-gpu/logs) for the full logs.
# Exits non-zero, naming the stage, when any stage fails (later stages still run, so one call on
# a lent machine shows everything).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${MEGAHOST_GPU_BUILD_DIR:-$ROOT/build-gpu}"
JOBS="${MEGAHOST_JOBS:-$(nproc)}"
LOG_DIR="${LOG_DIR:-${OUT:-$BUILD/logs}}"
mkdir -p "$LOG_DIR"
# NVLink multicast stays off everywhere (a program using it can take a shared host's GPUs down).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

failed=()
stage() { echo; echo "=== gpu_check: $* ($(date +%T))"; }
fail() { printf 'gpu_check: FAILED: %b\n' "$*" >&2; failed+=("${*%%:*}"); }
die() { printf 'gpu_check: FATAL: %b\n' "$*" >&2; exit 1; }

stage "environment"
command -v python3 >/dev/null || die "no python3 (the one with PyTorch)"
TORCH_PREFIX="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')" || die "python3 cannot import torch"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11_abi",
  torch._C._GLIBCXX_USE_CXX11_ABI, "gpus", torch.cuda.device_count(),
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
command -v nvcc >/dev/null || die "no nvcc (torch's CMake enables the CUDA language)\nHINT: put the CUDA toolkit's bin/ on PATH"
nvcc --version | tail -n 2 | head -n 1
cmake --version | head -n 1
GENERATOR="Unix Makefiles"
if command -v ninja >/dev/null; then GENERATOR=Ninja; fi

stage "dependencies from .gpu-deps"
PREFIX="$ROOT/.gpu-deps/prefix"
shopt -s nullglob
debs=("$ROOT"/.gpu-deps/debs/*.deb)
[ ${#debs[@]} -gt 0 ] || die "no .deb in .gpu-deps/debs\nHINT: run scripts/gpu_deps.sh on a machine with apt, carry .gpu-deps"
rm -rf "$PREFIX" && mkdir -p "$PREFIX"
for f in "${debs[@]}"; do dpkg -x "$f" "$PREFIX"; echo "  $(basename "$f")"; done  # never into /
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CPATH="$PREFIX/usr/include${CPATH:+:$CPATH}"
# PyTorch wheels ship their own {fmt} headers (include/fmt, a newer major) on the include path;
# the system spdlog is built against the system {fmt}. A -I folder (searched before every -isystem
# one) holding only fmt -> /usr/include/fmt makes <fmt/...> the system's again.
TORCH_INC="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))')"
SHADOW="$ROOT/.gpu-deps/shadow-include"
rm -rf "$SHADOW" && mkdir -p "$SHADOW"
EXTRA_CXX_FLAGS=""
fmt_version() { grep -hoE "define FMT_VERSION [0-9]+" "$1"/fmt/base.h "$1"/fmt/core.h 2>/dev/null | head -n 1 | awk '{print $3}'; }
echo "  {fmt}: torch $(fmt_version "$TORCH_INC") system $(fmt_version /usr/include);" \
  "spdlog $(grep -hoE "define SPDLOG_VER_(MAJOR|MINOR) [0-9]+" /usr/include/spdlog/version.h | awk '{printf "%s.", $3}')"
if [ -d "$TORCH_INC/fmt" ] && [ -d /usr/include/fmt ]; then
  ln -s /usr/include/fmt "$SHADOW/fmt"
  EXTRA_CXX_FLAGS="-I$SHADOW"
fi
[ -f .data/npm/gpt2/package/encoder.json ] || fail "data: .data/npm/gpt2 missing (tests skip, bench fails); carry .data"

stage "configure $BUILD (libtorch from $TORCH_PREFIX)"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
# Also for the CMake runs the tests start (tests/install builds an out-of-tree plugin).
export CMAKE_PREFIX_PATH="$PREFIX/usr:$TORCH_PREFIX${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
CUDACXX="$(command -v nvcc)"; export CUDACXX
if ! cmake -S "$ROOT" -B "$BUILD" -G "$GENERATOR" -DCMAKE_BUILD_TYPE="${MEGAHOST_GPU_BUILD_TYPE:-RelWithDebInfo}" \
    -DCMAKE_PREFIX_PATH="$PREFIX/usr;$TORCH_PREFIX" -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DCMAKE_CXX_FLAGS="$EXTRA_CXX_FLAGS" >"$LOG_DIR/configure.log" 2>&1; then
  tail -n 40 "$LOG_DIR/configure.log"
  die "configure failed (full log: $LOG_DIR/configure.log)"
fi
grep -E "megahost:|Torch|CUDA|cuDNN|Caffe2" "$LOG_DIR/configure.log" | grep -v "^--   " | head -n 20 || true
grep -q "megahost: .*CUDA '[0-9]" "$LOG_DIR/configure.log" || fail "configure: libtorch has no CUDA (see configure.log)"

stage "build (-j$JOBS)"
SECONDS=0
keep_going="-k"; [ "$GENERATOR" = Ninja ] && keep_going="-k0"  # every error in one go
# shellcheck disable=SC2086
if ! cmake --build "$BUILD" -j "$JOBS" ${MEGAHOST_GPU_TARGETS:+--target $MEGAHOST_GPU_TARGETS} -- "$keep_going" >"$LOG_DIR/build.log" 2>&1; then
  { grep -E "error:" "$LOG_DIR/build.log" | sort | uniq -c | sort -rn | head -n 60; } || true
  tail -n 20 "$LOG_DIR/build.log"
  # Every target that could be built was (-k0): carry on with those, the failure is reported.
  [ -x "$BUILD/bin/megahost" ] || die "build failed after ${SECONDS}s (full log: $LOG_DIR/build.log)"
  fail "build: some targets failed after ${SECONDS}s (full log: $LOG_DIR/build.log); testing what was built"
else
  echo "build ok in ${SECONDS}s; $(grep -c "warning:" "$LOG_DIR/build.log" || true) warnings"
fi

# libtorch.so of the PyTorch wheels exports copies of some libstdc++ functions, and in DT_NEEDED
# order it comes before libstdc++: std::filesystem::remove_all then jumped to address 0 (seen in
# the tests' plugin loader). Preloading libstdc++ puts the real definitions first.
# The CLI library links libtorch and libstdc++ (the `megahost` launcher may not: --as-needed);
# without it (a build of test targets only) the compiler's own libstdc++ is the same file.
LIBSTDCXX="$(ldd "$BUILD"/lib*/megahost/libmegahost_cli.so 2>/dev/null | awk '/libstdc\+\+/ {print $3; exit}')"
[ -n "$LIBSTDCXX" ] || LIBSTDCXX="$(readlink -f "$(${CXX:-g++} -print-file-name=libstdc++.so.6)")"
if [ -n "$LIBSTDCXX" ]; then export LD_PRELOAD="$LIBSTDCXX${LD_PRELOAD:+:$LD_PRELOAD}"; echo "LD_PRELOAD=$LD_PRELOAD"; fi

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  stage "ctest -j$JOBS"
  SECONDS=0
  # Two CPU threads per test process: ctest runs JOBS of them at once.
  if ! (cd "$BUILD" && OMP_NUM_THREADS=2 timeout "${CTEST_TIME_LIMIT:-300}" ctest --output-on-failure -j "$JOBS" ${CTEST_REGEX:+-R "$CTEST_REGEX"} >"$LOG_DIR/ctest.log" 2>&1); then
    fail "ctest"
    { grep -E "^\s+[0-9]+ - " "$LOG_DIR/ctest.log" | head -n 60; } || true
  fi
  echo "ctest in ${SECONDS}s:"
  grep -E "tests passed|tests failed|Total Test time" "$LOG_DIR/ctest.log" || true
  echo "skipped: $(grep -c "Skipped" "$LOG_DIR/ctest.log" || true)"
  { grep -E "\*\*\*Skipped|Not Run" "$LOG_DIR/ctest.log" | head -n 20; } || true
fi

# The benchmarks' corpus (GPT-2 BPE ids of the Brown corpus), once per checkout.
preprocess_corpus() {
  if [ ! -f .data/brown_text_document.idx ]; then
    "$BUILD/bin/megahost" preprocess --input .data/brown.jsonl --output-prefix .data/brown \
      --tokenizer-type GPT2BPETokenizer --vocab-file .data/npm/gpt2/package/encoder.json \
      --merge-file .data/npm/gpt2/package/vocab.bpe --append-eod --workers "$JOBS" >"$LOG_DIR/preprocess.log" 2>&1 ||
      fail "preprocess (see preprocess.log)"
  fi
}

if [ "${SKIP_BENCH:-0}" != 1 ]; then
  stage "benchmark: GPT-345M shape, one GPU"
  preprocess_corpus
  : >"$LOG_DIR/bench.log"
  # The reference script and megahost in the same call, same GPU, same shapes (issue 5's targets).
  BASELINE_CONFIGS="${BASELINE_CONFIGS:-gpt345m:eager gpt345m:compile gpt1.3b:eager gpt1.3b:compile}"
  if [ -f .gpu-deps/bench/gpt_baseline.py ] && [ -n "$BASELINE_CONFIGS" ]; then
    # shellcheck disable=SC2086
    if PYTHONUNBUFFERED=1 python3 .gpu-deps/bench/gpt_baseline.py $BASELINE_CONFIGS >"$LOG_DIR/baseline.log" 2>&1; then
      cat "$LOG_DIR/baseline.log"
    else
      tail -n 20 "$LOG_DIR/baseline.log"; fail "baseline gpt_baseline.py"
    fi
  else
    echo "no .gpu-deps/bench/gpt_baseline.py (scripts/gpu_deps.sh copies it) or BASELINE_CONFIGS empty: baseline skipped"
  fi
  # The Llama-style shape (examples/gpt/bench_llama1.3b.toml) against the project's own PyTorch
  # reference of it (tools/llama_baseline; LLAMA_BASELINE_CONFIGS= empty skips it).
  LLAMA_BASELINE_CONFIGS="${LLAMA_BASELINE_CONFIGS-llama1.3b:eager llama1.3b:compile}"
  if [ -n "$LLAMA_BASELINE_CONFIGS" ]; then
    # shellcheck disable=SC2086
    if PYTHONUNBUFFERED=1 python3 tools/llama_baseline/llama_baseline.py $LLAMA_BASELINE_CONFIGS \
        >"$LOG_DIR/baseline-llama.log" 2>&1; then
      grep -E "^llama" "$LOG_DIR/baseline-llama.log" | tee -a "$LOG_DIR/baseline.log"
    else
      tail -n 20 "$LOG_DIR/baseline-llama.log"; fail "baseline llama_baseline.py"
    fi
  fi
  # label|recipe|extra arguments|environment (VAR=value ...); BENCH_EXTRA appends more (one per
  # line), e.g. variants to compare.
  BENCH_RUNS="${BENCH_RUNS:-gpt345m|examples/gpt/bench_gpt345m.toml|
gpt1.3b|examples/gpt/bench_gpt1.3b.toml|
llama1.3b|examples/gpt/bench_llama1.3b.toml|}"
  [ -n "${BENCH_EXTRA:-}" ] && BENCH_RUNS="$BENCH_RUNS
$BENCH_EXTRA"
  while IFS='|' read -r label recipe extra envs; do
    [ -n "$label" ] || continue
    # shellcheck disable=SC2086
    if out="$(env $envs "$BUILD/bin/megahost" bench "$recipe" --warmup 5 --iters 20 --label "megahost-$label" \
        --json "$LOG_DIR/bench-megahost-$label.json" $extra 2>&1)"; then
      echo "$out" >>"$LOG_DIR/bench.log"
      echo "$out" | grep -E "^megahost-$label " || true
    else
      echo "$out" | tail -n 30; echo "$out" >>"$LOG_DIR/bench.log"; fail "bench megahost-$label"
    fi
  done <<<"$BENCH_RUNS"
  echo
  echo "=== megahost against the reference (same call; FLOPs: Megatron's count, FORMATS.md §5 for GPT; MFU against 989 TFLOP/s dense bf16)"
  python3 - "$LOG_DIR" <<'PY' || fail "bench table"
import glob, json, os, re, sys
log_dir = sys.argv[1]
base = {}
if os.path.exists(os.path.join(log_dir, "baseline.log")):
    for line in open(os.path.join(log_dir, "baseline.log")):
        m = re.match(r"(\S+):(eager|compile)\s.*tok/s/gpu=\s*(\d+).*mem=([\d.]+)GiB", line)
        if m: base[(m.group(1), m.group(2))] = (float(m.group(3)), float(m.group(4)))
print(f"{'run':34s} {'ms/iter':>8s} {'tokens/s':>9s} {'TFLOP/s':>8s} {'MFU':>6s} {'peak GiB':>8s}  vs eager  vs compile  mem vs eager")
for path in sorted(glob.glob(os.path.join(log_dir, "bench-megahost-*.json"))):
    j = json.load(open(path))
    shape = "llama1.3b" if "llama" in j["label"] else ("gpt1.3b" if j["seq_length"] == 2048 else "gpt345m")
    tok, mem = j["tokens_per_s_per_gpu"], j["peak_memory_bytes"] / 2**30
    ratio = lambda mode: f"{tok / base[(shape, mode)][0]:.3f}x" if (shape, mode) in base else "-"
    memr = f"{mem / base[(shape, 'eager')][1]:.3f}x" if (shape, "eager") in base else "-"
    print(f"{j['label']:34s} {j['ms_per_iter']:8.1f} {tok:9.0f} {j['tflops_per_gpu']:8.1f} {100*j['mfu']:5.1f}% {mem:8.1f}  {ratio('eager'):>8s}  {ratio('compile'):>9s}  {memr:>12s}")
for (shape, mode), (tok, mem) in sorted(base.items()):
    print(f"{'pytorch-' + shape + '-' + mode:34s} {'':8s} {tok:9.0f} {'':8s} {'':6s} {mem:8.1f}")
PY
fi

echo
# MULTI_GPU=N (a machine with N GPUs): data parallelism over N GPUs of one host, GPT-1.3B shape,
# micro batch 8 per GPU, in the same call: the reference (PyTorch DDP through torchrun, eager unless
# MULTI_GPU_BASELINE says otherwise) and `megahost launch --nproc-per-node N -- bench` for each
# line of MULTI_GPU_RUNS (label|recipe|extra arguments|environment), then per-GPU throughput
# against the one-GPU runs of the benchmark stage (scaling) and against DDP.
if [ -n "${MULTI_GPU:-}" ]; then
  N="$MULTI_GPU"
  stage "benchmark: GPT-1.3B shape, data parallel over $N GPUs"
  preprocess_corpus  # also with SKIP_BENCH=1
  : >"$LOG_DIR/bench-dp.log"
  if [ -f .gpu-deps/bench/gpt_baseline.py ] && [ "${MULTI_GPU_BASELINE:-gpt1.3b:eager}" != none ]; then
    # shellcheck disable=SC2086
    if PYTHONUNBUFFERED=1 python3 -m torch.distributed.run --standalone --nproc-per-node "$N" \
        .gpu-deps/bench/gpt_baseline.py ${MULTI_GPU_BASELINE:-gpt1.3b:eager} >"$LOG_DIR/baseline-dp.log" 2>&1; then
      grep -E "world=" "$LOG_DIR/baseline-dp.log"
    else
      tail -n 20 "$LOG_DIR/baseline-dp.log"; fail "baseline DDP over $N GPUs"
    fi
  fi
  GBS=$((8 * N))
  MULTI_GPU_RUNS="${MULTI_GPU_RUNS:-dp$N|examples/gpt/bench_gpt1.3b.toml|--set parallel.overlap_grad_reduce=true|
dp$N-distopt|examples/gpt/bench_gpt1.3b.toml|--set parallel.overlap_grad_reduce=true --set parallel.use_distributed_optimizer=true --set parallel.overlap_param_gather=true|}"
  while IFS='|' read -r label recipe extra envs; do
    [ -n "$label" ] || continue
    # shellcheck disable=SC2086
    if out="$(env $envs "$BUILD/bin/megahost" launch --nproc-per-node "$N" -- bench "$recipe" --warmup 5 --iters 20 \
        --label "megahost-$label" --json "$LOG_DIR/bench-dp-megahost-$label.json" \
        --set training.global_batch_size=$GBS $extra 2>&1)"; then
      echo "$out" >>"$LOG_DIR/bench-dp.log"; echo "$out" | grep -E "^megahost-$label |ms/iteration|grad_sync" || true
    else
      echo "$out" | tail -n 30; echo "$out" >>"$LOG_DIR/bench-dp.log"; fail "bench $label over $N GPUs"
    fi
  done <<<"$MULTI_GPU_RUNS"
  python3 - "$LOG_DIR" "$N" <<'PY' || fail "multi-GPU table"
import glob, json, os, re, sys
log_dir, n = sys.argv[1], int(sys.argv[2])
def baseline(path):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            m = re.match(r"(\S+):(eager|compile)\s+world=(\d+).*step=\s*([\d.]+)ms.*tok/s/gpu=\s*(\d+).*mem=([\d.]+)GiB", line)
            if m: out[(m.group(1), m.group(2), int(m.group(3)))] = (float(m.group(4)), float(m.group(5)), float(m.group(6)))
    return out
base = {**baseline(os.path.join(log_dir, "baseline.log")), **baseline(os.path.join(log_dir, "baseline-dp.log"))}
one = {}
for path in glob.glob(os.path.join(log_dir, "bench-megahost-*.json")):
    j = json.load(open(path))
    if j["seq_length"] == 2048: one[j["label"]] = j["tokens_per_s_per_gpu"]
one_gpu = max(one.values()) if one else None
print(f"{'run':34s} {'GPUs':>4s} {'ms/iter':>8s} {'tokens/s/GPU':>12s} {'peak GiB':>8s}  scaling  vs DDP")
ddp = base.get(("gpt1.3b", "eager", n))
for (shape, mode, w), (ms, tok, mem) in sorted(base.items()):
    if shape == "gpt1.3b":
        one_ref = base.get((shape, mode, 1))
        sc = f"{tok / one_ref[1]:.3f}" if one_ref and w > 1 else "-"
        print(f"{'pytorch-' + mode + ('-ddp' if w > 1 else ''):34s} {w:4d} {ms:8.1f} {tok:12.0f} {mem:8.1f}  {sc:>7s}  {'-':>6s}")
for path in sorted(glob.glob(os.path.join(log_dir, "bench-dp-megahost-*.json"))):
    j = json.load(open(path))
    tok = j["tokens_per_s_per_gpu"]
    sc = f"{tok / one_gpu:.3f}" if one_gpu else "-"
    vs = f"{tok / ddp[1]:.3f}x" if ddp else "-"
    print(f"{j['label']:34s} {j['world_size']:4d} {j['ms_per_iter']:8.1f} {tok:12.0f} {j['peak_memory_bytes'] / 2**30:8.1f}  {sc:>7s}  {vs:>6s}")
print("scaling: per-GPU tokens/s against the best one-GPU megahost GPT-1.3B run of this call (pytorch: its own one-GPU run)")
PY
fi

echo
# CKPT_BENCH=1: checkpoint save / load throughput of the GPT-1.3B bench recipe (docs/checkpoints.md):
# a synchronous and an asynchronous save at iteration 2, then a resume from the synchronous one.
if [ "${CKPT_BENCH:-0}" = 1 ]; then
  stage "checkpoint throughput (GPT-1.3B, bf16 + fp32 masters + AdamW state)"
  CK="${CKPT_DIR:-$BUILD/ckpt-bench}"
  rm -rf "$CK"
  for mode in sync async; do
    "$BUILD/bin/megahost" run examples/gpt/bench_gpt1.3b.toml --set training.train_iters=2 \
      --set checkpoint.save="$CK/$mode" --set checkpoint.save_interval=2 \
      --set checkpoint.async_save="$([ "$mode" = async ] && echo true || echo false)" >"$LOG_DIR/ckpt-$mode.log" 2>&1 ||
      fail "checkpoint $mode save (see ckpt-$mode.log)"
    grep -E "saved checkpoint|copied the state" "$LOG_DIR/ckpt-$mode.log" || true
  done
  sync
  if (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then echo "page cache dropped before the load"
  else echo "page cache NOT dropped (no permission): the load below may read cached pages"; fi
  "$BUILD/bin/megahost" run examples/gpt/bench_gpt1.3b.toml --set training.train_iters=3 \
    --set checkpoint.load="$CK/sync" >"$LOG_DIR/ckpt-load.log" 2>&1 || fail "checkpoint load (see ckpt-load.log)"
  grep -E "loaded .* in |resumed from" "$LOG_DIR/ckpt-load.log" || true
  df -h "$CK" | tail -n 1
  rm -rf "$CK"
fi

# MODELS_GPU=1: BERT and T5 on the GPU (issue 7): the tiny recipes learning on CUDA, then the
# Megatron example shapes (bert_340m, t5_220m) on one GPU through `megahost bench`.
if [ "${MODELS_GPU:-0}" = 1 ]; then
  stage "BERT and T5 on CUDA (Brown, sentence-split, the golden WordPiece vocabulary)"
  VOCAB=tests/data/golden/bert_wordpiece_uncased_vocab.txt
  if [ ! -f .data/brown_bert_text_sentence.idx ]; then
    "$BUILD/bin/megahost" preprocess --input .data/brown.jsonl --output-prefix .data/brown_bert \
      --tokenizer-type BertWordPieceLowerCase --vocab-file "$VOCAB" --split-sentences --workers "$JOBS" \
      >"$LOG_DIR/preprocess-bert.log" 2>&1 || fail "preprocess --split-sentences (see preprocess-bert.log)"
  fi
  for model in bert t5; do
    if "$BUILD/bin/megahost" run "examples/$model/tiny.toml" --set training.device=cuda --set training.precision=bf16 \
        --set training.train_iters=300 \
        >"$LOG_DIR/run-$model-tiny.log" 2>&1; then
      grep -E "iteration +(10|100|200|300)/|validation" "$LOG_DIR/run-$model-tiny.log" | head -n 12 || true
    else
      tail -n 20 "$LOG_DIR/run-$model-tiny.log"; fail "run $model tiny on cuda (see run-$model-tiny.log)"
    fi
  done
  # Each eagerly and with full-iteration CUDA graphs (the BERT recipe's micro batch 4 waits on the host eagerly).
  for spec in "bert|examples/bert/bert_340m.toml|" "bert-graph|examples/bert/bert_340m.toml|--set model.cuda_graph_impl=full_iteration" \
      "t5|examples/t5/t5_220m.toml|" "t5-graph|examples/t5/t5_220m.toml|--set model.cuda_graph_impl=full_iteration"; do
    IFS='|' read -r model recipe extra <<<"$spec"
    # shellcheck disable=SC2086
    if out="$("$BUILD/bin/megahost" bench "$recipe" --warmup 5 --iters 20 --label "megahost-$model" \
        --set data.data_path=.data/brown_bert_text_sentence --set tokenizer.vocab_file="$VOCAB" \
        --set parallel.tensor_model_parallel_size=1 --set parallel.pipeline_model_parallel_size=1 \
        --set training.device=cuda $extra ${MODELS_BENCH_EXTRA:-} 2>&1)"; then
      echo "$out" >>"$LOG_DIR/bench-models.log"; echo "$out" | grep -E "^megahost-$model |ms/iteration|peak memory|lm loss" || true
    else
      echo "$out" | tail -n 20; echo "$out" >>"$LOG_DIR/bench-models.log"; fail "bench $model"
    fi
  done
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu_check: FAILED stages: ${failed[*]} (logs in $LOG_DIR)"
  exit 1
fi
echo "gpu_check: all stages passed (logs in $LOG_DIR)"
