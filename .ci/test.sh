#!/usr/bin/env bash
# One CI test pass on whichever node is first on PATH: type check, lint, build, then vitest.
#   .ci/test.sh full    every suite (what `npm test` runs)
#   .ci/test.sh quick   every suite except the globs in .ci/slow-suites
# Prints the pass's test counts (test/summary-reporter.ts) and its time on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-full}
excludes=()
case "$mode" in
  full) ;;
  quick)
    while IFS= read -r line; do
      glob=${line%%#*}
      glob=${glob//[[:space:]]/}
      [ -n "$glob" ] && excludes+=(--exclude "$glob")
    done <.ci/slow-suites
    ;;
  *)
    echo "usage: .ci/test.sh full|quick" >&2
    exit 2
    ;;
esac

t0=$SECONDS
npm run typecheck
npm run lint
npm run build
rc=0
npx vitest run "${excludes[@]}" || rc=$?
printf 'ci: %s pass on Node %s: %s in %dm%02ds\n' "$mode" "$(node --version)" "$([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)")" \
  $(((SECONDS - t0) / 60)) $(((SECONDS - t0) % 60))
exit "$rc"
