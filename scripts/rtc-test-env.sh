#!/usr/bin/env bash
# Sets up what callfleet-rtc's end-to-end tests need and starts livekit-server on loopback:
#   - espeak-ng (speech for the tests) and cmake (builds the bundled libopus), via apt by name;
#   - a Python venv with LiveKit's Python SDK at pinned versions (the other participant);
#   - livekit-server (scripts/install-livekit-server.sh), started by scripts/start-livekit-server.sh.
# Prints `export …` lines on stdout (everything else goes to stderr):
#   env_lines="$(scripts/rtc-test-env.sh)" && eval "$env_lines"
#   scripts/rtc-test-env.sh stop      # stops the server it started
#
# Env: CALLFLEET_VENV (default $HOME/.cache/callfleet/venv), CALLFLEET_LIVEKIT_RUN_DIR
# (default /tmp/callfleet-livekit), LIVEKIT_PORT (default 7880) and the other variables of
# scripts/start-livekit-server.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${CALLFLEET_VENV:-$HOME/.cache/callfleet/venv}"
RUN_DIR="${CALLFLEET_LIVEKIT_RUN_DIR:-/tmp/callfleet-livekit}"
PY_PACKAGES=(livekit==1.2.1 livekit-api==1.2.2 numpy==2.4.6)

log() { echo "rtc-test-env: $*" >&2; }

if [[ "${1:-}" == "stop" ]]; then
    if [[ -f "$RUN_DIR/livekit-server.pid" ]]; then
        kill "$(cat "$RUN_DIR/livekit-server.pid")" 2>/dev/null || true
        rm -f "$RUN_DIR/livekit-server.pid"
        log "stopped livekit-server"
    fi
    exit 0
fi

# espeak-ng, cmake and python3-venv, by package name (a no-op when installed); its LIBCLANG_PATH line
# is for builds, not for this script's callers.
"$HERE/install-engine-deps.sh" >/dev/null

venv_ok() {
    [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" - "${PY_PACKAGES[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if version(name) != want:
        sys.exit(1)
import livekit.rtc, livekit.api, numpy  # noqa: F401
PY
}
if venv_ok; then
    log "venv $VENV has ${PY_PACKAGES[*]}"
else
    log "creating venv $VENV with ${PY_PACKAGES[*]}"
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}" >&2
    venv_ok || { log "the venv does not import the LiveKit SDK"; exit 1; }
fi

BIN="$("$HERE/install-livekit-server.sh")"
URL="$(LIVEKIT_SERVER_BIN="$BIN" "$HERE/start-livekit-server.sh" "$RUN_DIR")"
# Another server already on the port would answer the readiness poll while ours died.
sleep 0.5
if ! kill -0 "$(cat "$RUN_DIR/livekit-server.pid")" 2>/dev/null; then
    log "livekit-server exited; last log lines:"
    tail -n 5 "$RUN_DIR/livekit-server.log" >&2 || true
    exit 1
fi

echo "export CALLFLEET_LIVEKIT_URL='$URL'"
echo "export CALLFLEET_LIVEKIT_API_KEY='devkey'"
echo "export CALLFLEET_LIVEKIT_API_SECRET='secret'"
echo "export CALLFLEET_PYTHON='$VENV/bin/python'"
echo "export CALLFLEET_LIVEKIT_PID_FILE='$RUN_DIR/livekit-server.pid'"
