#!/usr/bin/env bash
# `make serve`: a local Prefect server (SQLite under .cache/prefect) plus the Metalize deployment
# served from this process with a nightly cron schedule. Ctrl-C stops both.
# Production: PostgreSQL via PREFECT_API_DATABASE_CONNECTION_URL, and `prefect deploy` + a worker
# on the GPU host (see README "Schedules").
set -euo pipefail
CONFIG="${1:-configs/demo.yaml}"
CRON="${CRON:-0 2 * * *}"
HOST="${PREFECT_HOST:-127.0.0.1}"
PORT="${PREFECT_PORT:-4200}"
export PREFECT_API_URL="http://${HOST}:${PORT}/api"
mkdir -p "${PREFECT_HOME:-.cache/prefect}"
if ! curl -fsS "${PREFECT_API_URL}/health" >/dev/null 2>&1; then
  echo "starting Prefect server on ${HOST}:${PORT} (UI: http://${HOST}:${PORT})"
  .venv/bin/prefect server start --host "$HOST" --port "$PORT" > "${PREFECT_HOME:-.cache/prefect}/server.log" 2>&1 &
  SERVER_PID=$!
  trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
  for _ in $(seq 1 120); do
    curl -fsS "${PREFECT_API_URL}/health" >/dev/null 2>&1 && break
    sleep 1
  done
fi
.venv/bin/metalize serve "$CONFIG" --cron "$CRON"
