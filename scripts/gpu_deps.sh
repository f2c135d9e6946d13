#!/usr/bin/env bash
# Prepares, on THIS machine (Debian, apt reachable), what scripts/gpu_check.sh needs on the GPU
# machine, which has no package registry and lacks toml++, dlpack (and maybe nlohmann-json):
#   .gpu-deps/debs/*.deb        Debian packages, unpacked there with dpkg -x (never into /)
#   .gpu-deps/bench/            the PyTorch reference script (gpt_baseline.py), timed in the same call
#   .data/                      GPT-2 vocab/merges, Brown corpus (scripts/fetch_data.sh)
# Then run on the GPU machine with carry = [".gpu-deps", ".data"]:  scripts/gpu_check.sh
# Both folders are git-ignored.  BASELINE=/path/to/gpt_baseline.py overrides where the script is.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.gpu-deps"
PACKAGES=(libtomlplusplus-dev libtomlplusplus3 libdlpack-dev nlohmann-json3-dev)

mkdir -p "$DEPS/debs" "$DEPS/bench"
missing=()
for p in "${PACKAGES[@]}"; do
  compgen -G "$DEPS/debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "gpu_deps: apt-get download ${missing[*]}"
  (cd "$DEPS/debs" && apt-get download -q "${missing[@]}")
fi
for p in "${PACKAGES[@]}"; do
  compgen -G "$DEPS/debs/${p}_*.deb" >/dev/null || { echo "gpu_deps: ERROR: no .deb for $p in $DEPS/debs" >&2; exit 1; }
done

BASELINE="${BASELINE:-$ROOT/../shared/bench/gpt_baseline.py}"
if [ -f "$BASELINE" ]; then
  cp "$BASELINE" "$DEPS/bench/gpt_baseline.py"
else
  echo "gpu_deps: WARNING: $BASELINE not found; gpu_check.sh will skip the PyTorch baseline" >&2
fi

"$ROOT/scripts/fetch_data.sh"

echo "gpu_deps: ready ($(du -sh "$DEPS" | cut -f1) in .gpu-deps, $(du -sh "$ROOT/.data" | cut -f1) in .data);" \
  "carry [\".gpu-deps\", \".data\"] and run scripts/gpu_check.sh there"
