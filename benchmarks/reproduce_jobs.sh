#!/bin/bash
# reproduce sine --quick --seeds 2 one unit after another, then with --jobs 2, into OUT (default
# a temporary folder): the wall time of each, their ratio and whether every evaluation.json is
# byte-identical (issue 27; docs/performance.md, "Units on this machine"). Run it on an idle
# machine: the two runs are timed one after the other.
set -euo pipefail
out=${1:-$(mktemp -d)}
wiseale=${WISEALE:-wiseale}
timed() {  # timed NAME ARGS...: seconds of `wiseale reproduce sine ... ARGS`
  local name=$1; shift
  local start=$(date +%s.%N)
  "$wiseale" reproduce sine --quick --seeds 2 --no-progress --out "$out/$name" "$@" \
    > "$out/$name.log" 2>&1
  echo "$(date +%s.%N) - $start" | bc
}
sequential=$(timed sequential)
jobs=$(timed jobs --jobs 2)
echo "one after another: ${sequential} s; --jobs 2: ${jobs} s; ratio $(echo "scale=2; $sequential / $jobs" | bc)"
cd "$out/sequential"
for f in $(find . -name evaluation.json | sort); do
  cmp -s "$f" "$out/jobs/$f" && echo "identical $f" || echo "DIFFERENT $f"
done
