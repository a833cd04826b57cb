#!/usr/bin/env bash
# Runs a command with the local AWS endpoint up: starts moto server (installing it on first use), exports the
# variables the SDK reads, runs the command, and stops moto afterwards whatever happened, unless it was already
# running before (then it belongs to someone else and is left alone).
set -euo pipefail
cd "$(dirname "$0")/.."
if scripts/moto.sh status >/dev/null 2>&1; then
  echo "moto: reusing the server already running" >&2
else
  scripts/moto.sh start
  trap 'scripts/moto.sh stop' EXIT
fi
eval "$(scripts/moto.sh env)"
"$@"
