#!/usr/bin/env bash
# Alternating measurements on the GPU machine, with the GPU's clock, power and temperature logged
# every 0.5 s (nvidia-smi queries only; nothing is set). Run after scripts/gpu_check.sh has built
# build-gpu/ (SKIP_BENCH=1 is enough). Each argument is one measurement, in order:
#   m:LABEL:RECIPE[:EXTRA ARGS]   megahost bench (5 warm-up, 20 timed); NAME=VALUE words among the
#                                 extra arguments go to its environment (e.g. MEGAHOST_GEMM_LOG=1)
#   mb:BUILD:LABEL:RECIPE[:EXTRA] the same with BUILD/bin/megahost (another build, e.g. an older commit's)
#   b:CONFIG:MODE                 .gpu-deps/bench/gpt_baseline.py CONFIG:MODE
#   sleep:S                       the GPU idle for S seconds
# Prints one line per measurement with the mean SM clock / power / temperature while it ran.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"; cd "$ROOT"
BUILD="${MEGAHOST_GPU_BUILD_DIR:-$ROOT/build-gpu}"
LOG="${OUT:-/tmp}/order"; mkdir -p "$LOG"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# The CLI library links libtorch and libstdc++ (the `megahost` launcher may not: --as-needed);
# without it (a build of test targets only) the compiler's own libstdc++ is the same file.
LIBSTDCXX="$(ldd "$BUILD"/lib*/megahost/libmegahost_cli.so 2>/dev/null | awk '/libstdc\+\+/ {print $3; exit}')"
[ -n "$LIBSTDCXX" ] || LIBSTDCXX="$(readlink -f "$(${CXX:-g++} -print-file-name=libstdc++.so.6)")"
if [ ! -f .data/brown_text_document.idx ]; then
  LD_PRELOAD="$LIBSTDCXX" "$BUILD/bin/megahost" preprocess --input .data/brown.jsonl --output-prefix .data/brown \
    --tokenizer-type GPT2BPETokenizer --vocab-file .data/npm/gpt2/package/encoder.json \
    --merge-file .data/npm/gpt2/package/vocab.bpe --append-eod --workers "$(nproc)" >"$LOG/preprocess.log" 2>&1
fi
nvidia-smi --query-gpu=timestamp,temperature.gpu,power.draw,clocks.sm,clocks.mem,utilization.gpu \
  --format=csv,noheader,nounits -lms 500 >"$LOG/smi.csv" 2>&1 &
SMI=$!
trap 'kill $SMI 2>/dev/null' EXIT
sleep 1
n=0
for spec in "$@"; do
  n=$((n + 1))
  IFS=':' read -r kind a b c <<<"$spec"
  bin="$BUILD/bin/megahost"
  if [ "$kind" = mb ]; then IFS=':' read -r _ dir a b c <<<"$spec"; bin="$dir/bin/megahost"; kind=m; fi
  t0=$(date +%s.%N)
  case "$kind" in
    m) envs=(); args=()
       for w in $c; do if [[ "$w" =~ ^[A-Z_][A-Z0-9_]*= ]]; then envs+=("$w"); else args+=("$w"); fi; done
       out="$(env "${envs[@]}" LD_PRELOAD="$LIBSTDCXX" "$bin" bench "$b" --warmup 5 --iters 20 --label "$a" "${args[@]}" 2>&1)"
       line="$(echo "$out" | grep -E "^$a " | head -n 1)"; [ -n "$line" ] || line="$(echo "$out" | tail -n 3)";;
    b) out="$(PYTHONUNBUFFERED=1 python3 .gpu-deps/bench/gpt_baseline.py "$a:$b" 2>&1)"
       line="$(echo "$out" | grep -E "^$a:$b" | head -n 1)"; [ -n "$line" ] || line="$(echo "$out" | tail -n 3)";;
    sleep) sleep "$a"; line="idle $a s";;
    *) line="unknown spec $spec";;
  esac
  t1=$(date +%s.%N)
  echo "$out" >"$LOG/$n-$kind.log" 2>/dev/null || true
  # GPU state over the last 6 s of the measurement (the timed part is at its end).
  state="$(python3 - "$LOG/smi.csv" "$t0" "$t1" <<'PY'
import sys, datetime
path, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rows = []
for line in open(path):
    f = [x.strip() for x in line.split(',')]
    try:
        t = datetime.datetime.strptime(f[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
        rows.append((t, float(f[1]), float(f[2]), float(f[3]), float(f[5])))
    except Exception:
        pass
busy = [r for r in rows if t1 - 6 <= r[0] <= t1 and r[4] > 50]
start = [r for r in rows if t0 <= r[0] <= t0 + 1.5]
if busy:
    n = len(busy)
    print(f"busy-tail: temp {sum(r[1] for r in busy)/n:.0f}C power {sum(r[2] for r in busy)/n:.0f}W sm {sum(r[3] for r in busy)/n:.0f}MHz"
          + (f"; at start temp {start[0][1]:.0f}C" if start else ""))
else:
    print("no busy samples" + (f"; at start temp {start[0][1]:.0f}C" if start else ""))
PY
)"
  printf '%2d %-50s %s\n   %s\n' "$n" "$spec" "$state" "$line"
done
