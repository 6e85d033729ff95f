#!/usr/bin/env bash
# Start livekit-server (dev keys devkey/secret) on loopback in the background and wait until it answers.
#
#   scripts/start-livekit-server.sh RUN_DIR
#
# Writes RUN_DIR/livekit-server.pid, RUN_DIR/livekit-server.log and RUN_DIR/livekit-server.yaml,
# prints the ws URL on stdout. Stop it with: kill "$(cat RUN_DIR/livekit-server.pid)"
#
# Env: LIVEKIT_SERVER_BIN (default: run scripts/install-livekit-server.sh and use what it prints),
#      LIVEKIT_PORT (HTTP/WS, default 7880), LIVEKIT_RTC_TCP_PORT (7881), LIVEKIT_RTC_UDP_PORT (7882),
#      LIVEKIT_START_TIMEOUT (seconds, default 30).
#
# `--bind 127.0.0.1` only covers the HTTP/WS listener. Without the rtc settings below the ICE UDP
# mux binds every non-loopback interface address and advertises no loopback candidate; with them
# it binds 127.0.0.1 only and offers 127.0.0.1 candidates. (The ICE-TCP listener always binds all
# addresses — livekit-server has no option for that; it only listens.)
set -euo pipefail

RUN_DIR="${1:?usage: $0 RUN_DIR}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${LIVEKIT_PORT:-7880}"
TCP_PORT="${LIVEKIT_RTC_TCP_PORT:-7881}"
UDP_PORT="${LIVEKIT_RTC_UDP_PORT:-7882}"
TIMEOUT="${LIVEKIT_START_TIMEOUT:-30}"

log() { echo "start-livekit-server: $*" >&2; }

BIN="${LIVEKIT_SERVER_BIN:-$("$HERE/install-livekit-server.sh")}"
mkdir -p "$RUN_DIR"
RUN_DIR="$(cd "$RUN_DIR" && pwd)"
PID_FILE="$RUN_DIR/livekit-server.pid"
LOG_FILE="$RUN_DIR/livekit-server.log"
CONF_FILE="$RUN_DIR/livekit-server.yaml"

if [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    log "already running, pid $(cat "$PID_FILE")"
    echo "ws://127.0.0.1:$PORT"
    exit 0
fi

cat > "$CONF_FILE" <<YAML
port: $PORT
rtc:
  tcp_port: $TCP_PORT
  udp_port: $UDP_PORT
  enable_loopback_candidate: true
  interfaces:
    includes: [lo]
  ips:
    includes: [127.0.0.1/8]
YAML

log "starting $BIN on 127.0.0.1:$PORT (rtc tcp $TCP_PORT, udp $UDP_PORT), log $LOG_FILE"
# setsid: own process group, so the caller's job control/signals don't reach it.
setsid "$BIN" --dev --bind 127.0.0.1 --node-ip 127.0.0.1 --config "$CONF_FILE" \
    >"$LOG_FILE" 2>&1 </dev/null &
pid=$!
echo "$pid" > "$PID_FILE"

deadline=$((SECONDS + TIMEOUT))
until [[ "$(curl -fsS --max-time 2 "http://127.0.0.1:$PORT/" 2>/dev/null || true)" == "OK" ]]; do
    if ! kill -0 "$pid" 2>/dev/null; then
        log "livekit-server exited during startup; last log lines:"
        tail -n 30 "$LOG_FILE" >&2 || true
        rm -f "$PID_FILE"
        exit 1
    fi
    if (( SECONDS >= deadline )); then
        log "no answer on 127.0.0.1:$PORT after ${TIMEOUT}s; stopping pid $pid"
        kill "$pid" 2>/dev/null || true
        tail -n 30 "$LOG_FILE" >&2 || true
        rm -f "$PID_FILE"
        exit 1
    fi
    sleep 0.2
done
log "ready (pid $pid)"
echo "ws://127.0.0.1:$PORT"
