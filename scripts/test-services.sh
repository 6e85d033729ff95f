#!/usr/bin/env bash
# Installs PostgreSQL, Redis, Chromium for the browser test and what the offline engines build and
# speak with (scripts/install-engine-deps.sh --test), and starts the servers the test suite talks
# to, on loopback only:
# PostgreSQL on 127.0.0.1:${CALLFLEET_PG_PORT:-55432} and Redis on 127.0.0.1:${CALLFLEET_REDIS_PORT:-56379}.
# Prints the environment the tests need; eval its output:  eval "$(scripts/test-services.sh start)"
# `scripts/test-services.sh stop` stops them.
set -euo pipefail

STATE="${CALLFLEET_SERVICES_DIR:-/tmp/callfleet-services}"
PG_PORT="${CALLFLEET_PG_PORT:-55432}"
REDIS_PORT="${CALLFLEET_REDIS_PORT:-56379}"

log() { echo "test-services: $*" >&2; }

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return; }
  done
  return 1
}

install_packages() {
  # PostgreSQL, Redis, Chromium (the talk page's browser test) and what the product builds and
  # speaks with, by package name (scripts/install-engine-deps.sh).
  "$(dirname "$0")/install-engine-deps.sh" --test
}

start_postgres() {
  local bin data
  bin="$(pg_bin)"
  data="$STATE/pg"
  mkdir -p "$STATE"
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    chown -R postgres:postgres "$STATE" 2>/dev/null || true
    run_as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >&2
  fi
  if ! run_as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    run_as_pg "$bin/pg_ctl" -D "$data" -l "$STATE/pg.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $STATE -c fsync=off -c max_connections=300" start >&2
  fi
  log "postgres on 127.0.0.1:$PG_PORT"
}

run_as_pg() {
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}

start_redis() {
  mkdir -p "$STATE"
  if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
      --daemonize yes --logfile "$STATE/redis.log" --pidfile "$STATE/redis.pid" >&2
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  log "redis on 127.0.0.1:$REDIS_PORT"
}

case "${1:-start}" in
  start)
    install_packages   # prints LIBCLANG_PATH for the build
    start_postgres
    start_redis
    echo "export CALLFLEET_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "export CALLFLEET_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
    echo "export CALLFLEET_CHROMIUM=$(command -v chromium)"
    ;;
  stop)
    bin="$(pg_bin)" && run_as_pg "$bin/pg_ctl" -D "$STATE/pg" stop -m fast >&2 || true
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
