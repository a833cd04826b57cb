#!/usr/bin/env bash
# The performance benchmark (BENCHMARKS.md): builds every function and the two baselines with the release profile,
# then measures them side by side against a local Lambda Runtime API and the local AWS endpoint (moto, started and
# stopped by scripts/with-moto.sh unless it is already running). Needs valgrind and zip.
#
#   scripts/bench.sh                        # full size: 5 runs x 20 events, 4 callgrind runs x 5 events per row
#   scripts/bench.sh --runs 1 --events 3    # quick look; any tollgate-bench option is passed on
#   BENCH_SKIP_BUILD=1 scripts/bench.sh     # reuse the binaries already in target/release
#
# Results: a Markdown report on stdout and in target/bench/report.md, raw figures in target/bench/results.json,
# function logs in target/bench/logs/. Exit status 2 when a function could not be measured (reported, not hidden).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in valgrind zip; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is needed (apt-get install $tool)" >&2; exit 1; }
done

# Every function of the workspace, built one by one so that one that does not compile is reported as missing
# instead of stopping the others.
functions=(ingest metrics gate guard hook changeset approval)
if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  cargo build --quiet -p tollgate
  cargo build --release --quiet -p tollgate-bench
  for f in "${functions[@]}"; do
    if [ -d "functions/$f" ]; then
      cargo build --release --quiet -p "$f" || echo "bench: $f does not build; it is reported as not started" >&2
    fi
  done
fi

exec scripts/with-moto.sh target/release/tollgate-bench --bin-dir target/release --tollgate target/debug/tollgate "$@"
