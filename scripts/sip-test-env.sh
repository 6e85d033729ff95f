#!/usr/bin/env bash
# Installs what the phone-call tests need and prints where it is:
#   - sipp (Debian package sip-tester: the SIP phone of the tests, RTP from WAV files),
#     and the cgo libraries livekit-sip links (libopus-dev libopusfile-dev libsoxr-dev pkg-config),
#     by package name;
#   - livekit-server (scripts/install-livekit-server.sh);
#   - livekit-sip, built through the Go module proxy and cached under $CALLFLEET_BIN
#     (default $HOME/.cache/callfleet/bin).
# The tests start their own livekit-server + livekit-sip + Redis per stack, on loopback only
# (callfleet_testkit::sip::SipStack): a SIP stack needs Redis shared by the two, and its webhooks must reach
# the dispatcher under test, so the shared livekit-server of scripts/rtc-test-env.sh cannot serve.
# Prints `export …` lines on stdout (everything else goes to stderr):
#   eval "$(scripts/sip-test-env.sh)"
#
# Why v1.8.0 and `go get` + `go build`: `go install …@v1.8.0` reads the module's version list,
# which the proxy refuses; v1.8.0 is the newest version the proxy serves (see PROTOCOLS.md).
set -euo pipefail

VERSION="${LIVEKIT_SIP_VERSION:-v1.8.0}"
BIN_DIR="${CALLFLEET_BIN:-$HOME/.cache/callfleet/bin}"
TARGET="$BIN_DIR/livekit-sip-$VERSION"
LINK="$BIN_DIR/livekit-sip"
packages=(sip-tester libopus-dev libopusfile-dev libsoxr-dev pkg-config redis-server)

log() { echo "sip-test-env: $*" >&2; }

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  "$@" apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2 || {
    # A stale list: update once and retry.
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
    packages=("${missing[@]}")
    apt_install sudo
  fi
fi

# The binary records its module version; a pin change rebuilds.
built_version() { go version -m "$1" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/livekit/sip" { print $3 }'; }

if [[ -x "$TARGET" ]] && [[ "$(built_version "$TARGET")" == "$VERSION" ]]; then
  log "cached $TARGET"
else
  command -v go >/dev/null || { log "go toolchain not found on PATH"; exit 1; }
  mkdir -p "$BIN_DIR"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  log "building github.com/livekit/sip/cmd/livekit-sip@$VERSION (takes ~3 min on 2 cores)"
  start=$SECONDS
  # An empty module of its own, so the repository's files cannot influence resolution.
  (cd "$tmp" && go mod init sipbuild >&2 2>/dev/null \
    && GOFLAGS="${GOFLAGS:--p=1}" go get "github.com/livekit/sip/cmd/livekit-sip@$VERSION" >&2 \
    && GOFLAGS="${GOFLAGS:--p=1}" nice -n 19 go build -o "$tmp/livekit-sip" github.com/livekit/sip/cmd/livekit-sip >&2)
  mv -f "$tmp/livekit-sip" "$TARGET"
  log "built in $((SECONDS - start)) s: $(built_version "$TARGET")"
fi
ln -sfn "$(basename "$TARGET")" "$LINK"

SERVER="$("$(dirname "$0")/install-livekit-server.sh")"

echo "export CALLFLEET_LIVEKIT_SIP_BIN='$LINK'"
echo "export CALLFLEET_LIVEKIT_SERVER_BIN='$SERVER'"
echo "export CALLFLEET_REDIS_SERVER_BIN='$(command -v redis-server)'"
echo "export CALLFLEET_SIPP_BIN='$(command -v sipp)'"
