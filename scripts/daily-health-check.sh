#!/usr/bin/env bash
# The guide's daily health check (Maintenance; §1 "Check service health"), kept as the guide names it:
# `rmsops check` (every quick check of runbooks 01–16) against one environment.
#
#   scripts/daily-health-check.sh [ENV] [rmsops check options ...]    (ENV defaults to production)
#
# Prints the problems, the tally and the verdict; the full output (ok findings too) goes to a file
# under $RMSOPS_HEALTH_DIR (default ~/.local/state/rmsops/health/) whose path is printed last.
# Exit status, as `rmsops check`: 0 all ok, 1 warning or critical, 2 bad input, 3 could not run.
# For cron (07:00 UTC every day, mail on a problem):
#   0 7 * * *  /opt/rms/rmsops/scripts/daily-health-check.sh production || echo "RMS health: exit $?"
set -u

env_name="${1:-production}"
[ $# -gt 0 ] && shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

rmsops="${RMSOPS:-}"
if [ -z "$rmsops" ]; then
    if [ -x "$here/.venv/bin/rmsops" ]; then
        rmsops="$here/.venv/bin/rmsops"
    elif command -v rmsops >/dev/null 2>&1; then
        rmsops="rmsops"
    else
        echo "daily-health-check: rmsops is not installed: run 'make -C $here .venv/.rmsops-installed'" \
             "or 'pip install rmsops', or set RMSOPS to the command" >&2
        exit 3
    fi
fi

folder="${RMSOPS_HEALTH_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/rmsops/health}"
if ! mkdir -p "$folder" 2>/dev/null || [ ! -w "$folder" ]; then
    echo "daily-health-check: cannot write to $folder; set RMSOPS_HEALTH_DIR to a writable folder" >&2
    exit 2
fi
safe_name="$(basename -- "$env_name" .yaml)"
safe_name="${safe_name//[^A-Za-z0-9._-]/-}"
output="$folder/$(date -u +%Y%m%dT%H%M%SZ)-$safe_name.txt"

# --all: the file keeps every finding, ok ones too (what was looked at, not only what was wrong).
"$rmsops" check -e "$env_name" --all "$@" >"$output" 2>&1
status=$?
grep -v '^  OK ' "$output"
echo "full output: $output"
exit "$status"
