#!/usr/bin/env bash
# Lint Tollgate's CloudFormation/SAM templates (infra/*.yaml) with cfn-lint and
# checkov. Exits non-zero on any cfn-lint error or warning and on any failed
# checkov check. Deliberate exceptions live in the templates as Metadata
# suppressions, each with a written reason.
#
# Usage: bash scripts/lint-infra.sh        (from any directory)
#
# Tools are taken from PATH when present. When missing:
#   - cfn-lint is installed with pip into the current python3;
#   - checkov is installed into its own virtual environment, because it pins
#     boto3/botocore versions that would otherwise downgrade (and break) an
#     awscli/boto3 already installed in that python. Location:
#     $TOLLGATE_LINT_VENV, default ~/.cache/tollgate/lint-venv.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CFN_LINT_VERSION="1.51.0"
CHECKOV_VERSION="3.3.30"
LINT_VENV="${TOLLGATE_LINT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate/lint-venv}"

log() { printf '[lint-infra] %s\n' "$*" >&2; }

# ------------------------------------------------------------------ tools
if command -v cfn-lint >/dev/null 2>&1; then
  CFN_LINT=(cfn-lint)
else
  log "cfn-lint not found; installing cfn-lint==${CFN_LINT_VERSION} with pip"
  python3 -m pip install --quiet --disable-pip-version-check "cfn-lint==${CFN_LINT_VERSION}"
  # The console script may not be on PATH yet (pyenv shims, --user installs).
  CFN_LINT=(python3 -c 'import sys; from cfnlint.runner import main; sys.exit(main())')
fi

if command -v checkov >/dev/null 2>&1; then
  CHECKOV=(checkov)
else
  if [[ ! -x "${LINT_VENV}/bin/checkov" ]]; then
    log "checkov not found; installing checkov==${CHECKOV_VERSION} into ${LINT_VENV}"
    python3 -m venv "${LINT_VENV}"
    "${LINT_VENV}/bin/python3" -m pip install --quiet --disable-pip-version-check "checkov==${CHECKOV_VERSION}"
  fi
  CHECKOV=("${LINT_VENV}/bin/checkov")
fi

shopt -s nullglob
templates=(infra/*.yaml)
shopt -u nullglob
if (( ${#templates[@]} == 0 )); then
  echo "lint-infra: no templates found under infra/" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0

# ------------------------------------------------------------------ cfn-lint
# Exit code is a bit mask: 2 = error, 4 = warning, 8 = informational.
# Errors and warnings fail; informational findings are shown only.
cfn_rc=0
"${CFN_LINT[@]}" --format parseable -- "${templates[@]}" >"$work/cfn-lint.txt" 2>&1 || cfn_rc=$?
cat "$work/cfn-lint.txt"
cfn_errors=$(grep -cE ':E[0-9]{4}:' "$work/cfn-lint.txt" || true)
cfn_warnings=$(grep -cE ':W[0-9]{4}:' "$work/cfn-lint.txt" || true)
if (( cfn_rc & ~8 )); then
  echo "cfn-lint: FAILED - ${cfn_errors} error(s), ${cfn_warnings} warning(s) in ${#templates[@]} template(s) (exit ${cfn_rc})"
  status=1
else
  echo "cfn-lint: OK - 0 errors, 0 warnings in ${#templates[@]} template(s) (${templates[*]})"
fi

# ------------------------------------------------------------------ checkov
# --skip-download: no calls to the Prisma Cloud API (no network needed; it only
# adds guideline links/severities, which need an API key anyway).
checkov_rc=0
"${CHECKOV[@]}" -d infra --framework cloudformation --quiet --compact --skip-download \
  --output cli --output json --output-file-path "console,$work/checkov.json" || checkov_rc=$?

summary="$(python3 - "$work/checkov.json" <<'PY' || true
import json, sys
try:
    with open(sys.argv[1]) as f:
        data = json.load(f)
except (OSError, ValueError):
    sys.exit(1)
if isinstance(data, list):  # one entry per framework
    data = next((d for d in data if d.get("check_type") == "cloudformation"), data[0] if data else {})
s = data.get("summary", {})
print(s.get("passed", 0), s.get("failed", 0), s.get("skipped", 0), s.get("parsing_errors", 0), s.get("resource_count", 0))
PY
)"
if [[ -z "$summary" ]]; then
  echo "checkov: FAILED - no results (exit ${checkov_rc})"
  status=1
else
  read -r passed failed skipped parse_errors resources <<<"$summary"
  line="${passed} passed, ${failed} failed, ${skipped} skipped (suppressed with reasons), ${parse_errors} parsing errors, ${resources} resources"
  if (( checkov_rc != 0 || failed != 0 || parse_errors != 0 || resources == 0 )); then
    echo "checkov: FAILED - ${line} (exit ${checkov_rc})"
    status=1
  else
    echo "checkov: OK - ${line}"
  fi
fi

exit "$status"
