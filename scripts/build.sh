#!/usr/bin/env bash
# Configures and builds megahost (CPU, Debian's libtorch) into build/. Extra args go to cmake.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MEGAHOST_BUILD_DIR:-$ROOT/build}"
JOBS="${MEGAHOST_JOBS:-$(nproc)}"
# Line tables only (-g1): backtraces and profilers still name file:line, and the libtorch-heavy
# translation units compile ~30% faster than with full debug info (docs/architecture.md).
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" "$@"
cmake --build "$BUILD" -j "$JOBS"
