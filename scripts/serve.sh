#!/usr/bin/env bash
# `make serve`: a local Prefect server (SQLite under .cache/prefect) plus the Metalize deployment
# served from this process with a nightly cron schedule. Ctrl-C stops both.
# Production: PostgreSQL via PREFECT_API_DATABASE_CONNECTION_URL, and `prefect deploy` + a worker
# on the GPU host (see README "Schedules").
#
# Whatever answers on PREFECT_HOST:PREFECT_PORT must be a Prefect API (its /api/health says true
# and /api/admin/version a version), or this stops: deployments registered with another program
# would be lost silently. A server we start must answer within PREFECT_STARTUP_S seconds, or this
# stops with the end of its log.
set -euo pipefail
CONFIG="${1:-configs/demo.yaml}"
CRON="${CRON:-0 2 * * *}"
HOST="${PREFECT_HOST:-127.0.0.1}"
PORT="${PREFECT_PORT:-4200}"
STARTUP_S="${PREFECT_STARTUP_S:-120}"
PREFECT="${PREFECT_BIN:-.venv/bin/prefect}"
METALIZE="${METALIZE_BIN:-.venv/bin/metalize}"
export PREFECT_API_URL="http://${HOST}:${PORT}/api"
STATE="${PREFECT_HOME:-.cache/prefect}"
mkdir -p "$STATE"
LOG="$STATE/server.log"

fail() { echo "make serve: $*" >&2; exit 1; }

# The Prefect version when a Prefect API answers there; nothing otherwise.
prefect_version() {
  [ "$(curl -fsS --max-time 3 "$PREFECT_API_URL/health" 2>/dev/null)" = "true" ] || return 1
  curl -fsS --max-time 3 "$PREFECT_API_URL/admin/version" 2>/dev/null | tr -d '"' | grep -E '^[0-9]+\.[0-9]+' || return 1
}

port_taken() { (exec 3<>"/dev/tcp/${HOST}/${PORT}") 2>/dev/null; }

if version=$(prefect_version); then
  echo "using the Prefect ${version} server already on ${HOST}:${PORT}"
elif port_taken; then
  fail "${HOST}:${PORT} is taken by a program that is not a Prefect server (${PREFECT_API_URL}/health did not answer true); stop it or choose another port: PREFECT_PORT=4300 make serve"
else
  echo "starting Prefect server on ${HOST}:${PORT} (UI: http://${HOST}:${PORT}, log: ${LOG})"
  "$PREFECT" server start --host "$HOST" --port "$PORT" > "$LOG" 2>&1 &
  SERVER_PID=$!
  trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
  for _ in $(seq 1 "$STARTUP_S"); do
    version=$(prefect_version) && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$LOG" >&2; fail "the Prefect server exited before it answered (log above, in full: ${LOG})"; }
    sleep 1
  done
  [ -n "${version:-}" ] || { tail -n 20 "$LOG" >&2; fail "the Prefect server did not answer on ${PREFECT_API_URL} within ${STARTUP_S} s (log above, in full: ${LOG}; more time: PREFECT_STARTUP_S=300)"; }
  echo "Prefect ${version} is up"
fi
"$METALIZE" serve "$CONFIG" --cron "$CRON"
