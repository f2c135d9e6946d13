#!/usr/bin/env bash
# Installs the Debian 12 packages megahost builds and tests with (only the missing ones).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config perl curl ca-certificates
  libtorch-dev libboost-dev libtomlplusplus-dev libcxxopts-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libdlpack-dev nlohmann-json3-dev
  libsentencepiece-dev sentencepiece zlib1g-dev libzstd-dev zstd
  libgloo-dev           # c10d ProcessGroupGloo headers: multi-process runs and tests on CPU
  libopenblas0-openmp   # Debian's libtorch calls the BLAS alternative: reference BLAS is ~7x slower
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
