#!/usr/bin/env bash
# Install a pinned livekit-server through the Go module proxy, cached outside the clone.
#
#   scripts/install-livekit-server.sh          # installs if missing, prints the binary path last
#
# Env:
#   LIVEKIT_SERVER_VERSION  tag to install (default: the pinned one below)
#   CALLFLEET_BIN           cache dir for binaries (default: $HOME/.cache/callfleet/bin)
#
# Why v1.13.5: it is the newest tag whose go.mod has no `replace` directives. v1.13.6..v1.13.11
# replace pion/webrtc, pion/dtls and pion/ice with LiveKit forks, and `go install pkg@version`
# refuses any module with replace directives (see docs/livekit-notes.md for the exact error).
set -euo pipefail

VERSION="${LIVEKIT_SERVER_VERSION:-v1.13.5}"
BIN_DIR="${CALLFLEET_BIN:-$HOME/.cache/callfleet/bin}"
# `go install` names the binary after the package dir (cmd/server -> "server"); we keep a
# versioned copy so a pin change reinstalls, and a stable symlink for callers.
TARGET="$BIN_DIR/livekit-server-$VERSION"
LINK="$BIN_DIR/livekit-server"

log() { echo "install-livekit-server: $*" >&2; }

if [[ -x "$TARGET" ]] && "$TARGET" --version 2>/dev/null | grep -qx "livekit-server version ${VERSION#v}"; then
    log "cached $TARGET ($("$TARGET" --version)), skipping build"
else
    command -v go >/dev/null || { log "go toolchain not found on PATH"; exit 1; }
    mkdir -p "$BIN_DIR"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    log "building github.com/livekit/livekit-server/cmd/server@$VERSION with $(go version | cut -d' ' -f3) (takes ~2 min on 2 cores)"
    start=$SECONDS
    # Run outside any module so the repo's files can't influence resolution.
    (cd "$tmp" && GOBIN="$tmp/bin" GOFLAGS="${GOFLAGS:--p=1}" nice -n 19 \
        go install "github.com/livekit/livekit-server/cmd/server@$VERSION")
    mv -f "$tmp/bin/server" "$TARGET"
    log "built in $((SECONDS - start)) s: $("$TARGET" --version)"
fi

ln -sfn "$(basename "$TARGET")" "$LINK"
echo "$LINK"
