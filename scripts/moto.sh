#!/usr/bin/env bash
# The local AWS endpoint: moto server on 127.0.0.1, installed into .local/venv on first use.
#
#   scripts/moto.sh install | start | stop | status | env
#
# start prints nothing else than progress; `eval "$(scripts/moto.sh env)"` sets the variables the SDK reads.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${TOLLGATE_MOTO_PORT:-5055}"
STATE_DIR=.local
VENV="$STATE_DIR/venv"
PIDFILE="$STATE_DIR/moto.pid"
LOG="$STATE_DIR/moto.log"
# The account the local run pretends to be (moto stamps it on events it routes).
ACCOUNT="${TOLLGATE_LOCAL_ACCOUNT:-111122223333}"
MOTO_SPEC='moto[server]>=5.1,<6'

install() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import moto.server, flask' 2>/dev/null; then
    return 0
  fi
  echo "moto: installing $MOTO_SPEC into $VENV" >&2
  mkdir -p "$STATE_DIR"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$MOTO_SPEC"
}

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

ready() {
  "$VENV/bin/python" - "$PORT" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/data.json", timeout=1)
except Exception:
    sys.exit(1)
PY
}

start() {
  install
  if running; then
    echo "moto: already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))" >&2
    return 0
  fi
  MOTO_ACCOUNT_ID="$ACCOUNT" nohup "$VENV/bin/python" scripts/moto_server.py 127.0.0.1 "$PORT" >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    if ready; then
      echo "moto: listening on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), log $LOG)" >&2
      return 0
    fi
    if ! running; then
      echo "moto: the server exited during start-up; its log:" >&2
      cat "$LOG" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "moto: not answering on 127.0.0.1:$PORT after 20 s; see $LOG" >&2
  return 1
}

stop() {
  if running; then
    kill "$(cat "$PIDFILE")" 2>/dev/null || true
    for _ in $(seq 1 50); do running || break; sleep 0.1; done
    echo "moto: stopped" >&2
  fi
  rm -f "$PIDFILE"
}

env_lines() {
  cat <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=eu-west-1
export AWS_DEFAULT_REGION=eu-west-1
export TOLLGATE_MAX_ATTEMPTS=2
export TOLLGATE_TEST_ENDPOINT=http://127.0.0.1:$PORT
ENV
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running (pid $(cat "$PIDFILE"))"; else echo "stopped"; exit 1; fi ;;
  env) env_lines ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
