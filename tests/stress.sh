#!/usr/bin/env bash
# stress.sh — run the test suite N times in a row beside CPU hogs, to catch tests that race on
# a loaded machine (issue 14: CI failed on tests that waited by the clock).
#
#   tests/stress.sh [N]        N runs (default 3) of `make test`
#
# Knobs: HOGS (busy-loop processes, default the number of CPUs), CMD (the command of one run,
# default "make test"; e.g. CMD="prove tests/integration/8*.t" with SIPWAKE_BIN set), OUT (logs,
# default var/stress/<time>). Each run's output goes to OUT/run-I.log; a summary to
# OUT/summary.txt. The hogs run at the same priority as the tests and are stopped at the end,
# however the script ends. Exits 0 if every run passed, 1 otherwise.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-3}
HOGS=${HOGS:-$(nproc)}
CMD=${CMD:-make test}
OUT=${OUT:-$ROOT/var/stress/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 2
SUMMARY=$OUT/summary.txt
cd "$ROOT" || exit 2

HOG_PIDS=()
stop_hogs() {
  for p in "${HOG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${HOG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  HOG_PIDS=()
}
trap stop_hogs EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 "$HOGS"); do
  sh -c 'while :; do :; done' &
  HOG_PIDS+=($!)
done
echo "# $N runs of '$CMD' beside $HOGS CPU hog(s) (pids ${HOG_PIDS[*]}); logs in $OUT" | tee "$SUMMARY"

failed=0
for i in $(seq 1 "$N"); do
  t0=$(date +%s)
  if bash -c "$CMD" > "$OUT/run-$i.log" 2>&1; then v=PASS; else v=FAIL; failed=$((failed + 1)); fi
  line="run $i: $v in $(( $(date +%s) - t0 )) s"
  # prove's list of failed test files, if any
  [ "$v" = FAIL ] && line="$line: $(grep -E '^[^ ]+\.t +\(Wstat' "$OUT/run-$i.log" | awk '{print $1}' | tr '\n' ' ')"
  echo "$line" | tee -a "$SUMMARY"
done
echo "# $failed of $N runs failed" | tee -a "$SUMMARY"
[ "$failed" = 0 ]
