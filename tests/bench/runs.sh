#!/usr/bin/env bash
# runs.sh NAME SCRIPT — `make bench`: RUNS (3) runs of one benchmark script on the same code,
# then its table, the median of the runs (tests/bench/report.pl).
#
# The runs go to var/bench/<time>-NAME/run<N>/ (OUT of each run: its summary.txt, its
# results.tsv, every step's files); var/bench/<time>-NAME/meta records the name, the date
# (UTC), the commit (`git rev-parse --short HEAD`, "+dirty" when the tree differs from it; the
# commit at the end too, when it changed meanwhile), the host and the script with the knobs
# it ran with; var/bench/<time>-NAME/table.md is report.pl's table, printed at the end —
# the Markdown the README's bench blocks hold (`make bench-readme` copies the latest in).
#
# Knobs: RUNS (3); BASE (the directory; default var/bench/<time>-NAME); the script's own
# knobs pass through the environment (and are recorded in meta when set).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NAME=${1:?usage: runs.sh NAME SCRIPT}
SCRIPT=${2:?usage: runs.sh NAME SCRIPT}
RUNS=${RUNS:-3}
BASE=${BASE:-$ROOT/var/bench/$(date -u +%Y%m%d-%H%M%S)-$NAME}
case $BASE in /*) ;; *) BASE=$ROOT/var/bench/$BASE ;; esac

commit() {
  local c
  c=$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null) || { echo unknown; return; }
  [ -n "$(git -C "$ROOT" status --porcelain 2> /dev/null)" ] && c="$c+dirty"
  echo "$c"
}
mkdir -p "$BASE" || exit 2
knobs=""
for k in RATES DUR REFINE GRAIN RETRY OVERLOAD SETTLE_MAX CALLEES LAT_RATE TARGETS WIRE_CALLS WIRE_DELAY MEM_REGS MEM_RATE DRAIN \
  SINK_COUNT COUNT CONNECTIONS STREAMS ROUNDS EMULATOR; do
  [ -n "${!k:-}" ] && knobs+="$k=\"${!k}\" "
done
COMMIT=$(commit)
{
  echo "name=$NAME"
  echo "date=$(date -u '+%Y-%m-%d %H:%M') UTC"
  echo "commit=$COMMIT"
  echo "runs=$RUNS"
  echo "host=$(nproc) CPUs, $(. /etc/os-release 2> /dev/null && echo "$PRETTY_NAME"), $(kamailio -v 2> /dev/null | awk 'NR == 1 {print "Kamailio", $3}'), $(sipp -v 2> /dev/null | grep -o 'SIPp v[0-9.]*' | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
  echo "script=${knobs}${SCRIPT#"$ROOT"/}"
} > "$BASE/meta"

for n in $(seq 1 "$RUNS"); do
  printf '%s runs.sh %s: run %s of %s -> %s/run%s\n' "$(date +%T)" "$NAME" "$n" "$RUNS" "$BASE" "$n" >&2
  OUT=$BASE/run$n "$SCRIPT" || printf 'runs.sh %s: run %s exited %s\n' "$NAME" "$n" "$?" >&2
done
end=$(commit)
[ "$end" = "$COMMIT" ] || echo "commit_end=$end" >> "$BASE/meta"
perl "$ROOT/tests/bench/report.pl" "$BASE" > "$BASE/table.md" || exit 1
echo
echo "## $NAME: median of the runs ($BASE/table.md)"
echo
cat "$BASE/table.md"
