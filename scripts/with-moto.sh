#!/usr/bin/env bash
# Runs a command with the local AWS endpoint up: starts moto server (installing it on first use), exports the
# variables the SDK reads, runs the command, and stops moto afterwards whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/moto.sh start
trap 'scripts/moto.sh stop' EXIT
eval "$(scripts/moto.sh env)"
"$@"
