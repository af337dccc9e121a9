#!/usr/bin/env bash
# push.sh — `make bench` (third part): push throughput of sipwake's HTTP/2 push client against
# h2load's, with the CPU each spends per push.
#
# Two targets on 127.0.0.1, both with the same certificate and $STREAMS concurrent streams per
# connection:
#   sink (tests/bench/build/h2sink, C on nghttp2's server API): checks nothing, answers every
#     request 200 with an apns-id at once — far faster than either client, so the rates and
#     the ratio are the clients' own;
#   emulator (tests/emulators/apns.py, token auth, no log): checks every request as APNs
#     would, and caps both clients at a few thousand pushes/s (skip with EMULATOR=0).
# Against each, ROUNDS rounds; each round runs, in turns:
#   h2load (Debian nghttp2-client): N POSTs of the same VoIP push — the same path, apns-*
#     headers, provider token and JSON payload sipwake sends — over $CONNECTIONS connections
#     with up to $STREAMS streams each (-c, -m);
#   sipwake (tests/bench/push_bench.c on the release objects): N pushes to 64 push bindings
#     through the dispatcher (push.c: pn params, payload, accounting) and the pool
#     (push/h2_pool.c, apns.c) with [push] connections = $CONNECTIONS;
# with N = $SINK_COUNT against the sink and $COUNT against the emulator. Each process runs
# under /usr/bin/time: cpu = its user+sys CPU time / N, in µs per push (includes its start-up:
# keys, TLS handshakes). target% is the target's own CPU time during that run / its wall time
# (from /proc/PID/stat; 100 = one core busy: the target, not the client, sets the rate). The ratio sipwake/h2load is taken per round; the summary gives the
# median of the rounds and [min-max]. Each round is also written to results.tsv (lib.sh res),
# from which tests/bench/report.pl prints the Markdown table (tests/bench/runs.sh push).
# Never fails on a timing.
#
# Knobs: SINK_COUNT (100000), COUNT (20000), CONNECTIONS (2), STREAMS (100), ROUNDS (3),
#        EMULATOR (1), OUT (result directory).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SINK_COUNT=${SINK_COUNT:-100000}
COUNT=${COUNT:-20000}
CONNECTIONS=${CONNECTIONS:-2}
STREAMS=${STREAMS:-100}
ROUNDS=${ROUNDS:-3}
EMULATOR=${EMULATOR:-1}
BENCH=$ROOT/tests/bench/build/push_bench
SINK=$ROOT/tests/bench/build/h2sink
for b in "$BENCH" "$SINK"; do
  [ -x "$b" ] || { echo "push.sh: $b missing: make tests/bench/build/push_bench tests/bench/build/h2sink" >&2; exit 2; }
done
. "$ROOT/tests/bench/out.sh"
bench_out push
SUMMARY="$OUT/summary.txt"
PID=""
. "$ROOT/tests/bench/lib.sh"

EMU="" SINK_PID=""
trap '[ -n "$EMU" ] && kill $EMU 2>/dev/null; [ -n "$SINK_PID" ] && kill $SINK_PID 2>/dev/null; wait 2>/dev/null' EXIT
start_apns "$OUT" --max-streams "$STREAMS" --lifetime 3600
[ -n "$EMU_PORT" ] || { echo "push.sh: the APNs emulator did not start ($OUT/emulator.out)" >&2; exit 1; }
"$SINK" cert.pem key.pem "$STREAMS" > sink.out 2>&1 &
SINK_PID=$!
for _ in $(seq 1 50); do grep -q listening sink.out && break; sleep 0.1; done
SINK_PORT=$(awk '/listening/ {print $2}' sink.out)
[ -n "$SINK_PORT" ] || { echo "push.sh: h2sink did not start ($OUT/sink.out)" >&2; exit 1; }
TOKEN=$("$BENCH" --request apns.p8 KEY1234567 TEAM123456 payload.json)

say "# sipwake push throughput benchmark $(date -Is) commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
say "# $(nproc) CPUs, $(uname -r), $(h2load --version 2>/dev/null | head -1), $("$ROOT/server/sipwake" --version 2>/dev/null || echo 'server/sipwake not built')"
say "# $CONNECTIONS connections, $STREAMS streams each; sink: tests/bench/h2sink (answers 200 to anything) on 127.0.0.1:$SINK_PORT, $SINK_COUNT pushes per round"
[ "$EMULATOR" = 1 ] && say "# emulator: tests/emulators/apns.py (checks requests) on 127.0.0.1:$EMU_PORT, $COUNT pushes per round"
printf '%-9s %-6s %-8s %10s %10s %10s %8s\n' target round tool 'pushes/s' ok 'cpu_us' 'target%' | tee -a "$SUMMARY"

# timed FILE CMD...: runs CMD under /usr/bin/time, its output to stdout, "user sys wall" seconds
# to FILE
timed() { local f=$1; shift; /usr/bin/time -o "$f" -f '%U %S %e' "$@" 2>&1; }
cpu_us() { awk -v n="$2" 'END { if (n > 0) printf "%.1f", ($1 + $2) * 1e6 / n; else print "NA" }' "$1"; }
TICK=$(getconf CLK_TCK)
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# busy PID TICKS_BEFORE TIMEFILE: the target's CPU % over the client's wall time
busy() { awk -v a="$2" -v b="$(ticks "$1")" -v hz="$TICK" 'END { if ($3 > 0) printf "%.0f", (b - a) / hz / $3 * 100; else print "NA" }' "$3"; }
row() { printf '%-9s %-6s %-8s %10s %10s %10s %8s\n' "$@" | tee -a "$SUMMARY"; }

declare -A RATE CPU RATIO
round() {  # target port pid count round
  local t=$1 port=$2 pid=$3 n=$4 r=$5 out rate ok h2rate t0
  t0=$(ticks "$pid")
  out=$(timed "time-$t-$r-h2load" h2load -n "$n" -c "$CONNECTIONS" -m "$STREAMS" -d payload.json \
    -H "authorization: bearer $TOKEN" -H "apns-topic: org.example.app.voip" \
    -H "apns-push-type: voip" -H "apns-priority: 10" -H "apns-expiration: 0" \
    "https://127.0.0.1:$port/3/device/00000000000000000000000000000001")
  printf '%s\n' "$out" > "h2load-$t-$r.out"
  rate=$(printf '%s\n' "$out" | awk '/finished in/ {gsub(",", "", $4); printf "%.0f", $4}')
  ok=$(printf '%s\n' "$out" | awk '/status codes:/ {print $3}')
  h2rate=${rate:-0}
  RATE[$t-h2load]+=" $h2rate"
  CPU[$t-h2load]+=" $(cpu_us "time-$t-$r-h2load" "$n")"
  local b; b=$(busy "$pid" "$t0" "time-$t-$r-h2load")
  row "$t" "$r" h2load "$h2rate" "${ok:-0}" "$(cpu_us "time-$t-$r-h2load" "$n")" "$b"
  res "round target=$t round=$r tool=h2load rate=$h2rate ok=${ok:-0} cpu_us=$(cpu_us "time-$t-$r-h2load" "$n") target_pct=$b"
  t0=$(ticks "$pid")
  out=$(timed "time-$t-$r-sipwake" "$BENCH" 127.0.0.1 "$port" cert.pem apns.p8 KEY1234567 TEAM123456 "$n" "$CONNECTIONS")
  printf '%s\n' "$out" > "sipwake-$t-$r.out"
  rate=$(printf '%s\n' "$out" | awk '/^pushes/ {print $8}')
  ok=$(printf '%s\n' "$out" | awk '/^pushes/ {print $4}')
  RATE[$t-sipwake]+=" ${rate:-0}"
  CPU[$t-sipwake]+=" $(cpu_us "time-$t-$r-sipwake" "$n")"
  RATIO[$t]+=" $(awk -v a="${rate:-0}" -v b="$h2rate" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print 0 }')"
  b=$(busy "$pid" "$t0" "time-$t-$r-sipwake")
  row "$t" "$r" sipwake "${rate:-0}" "${ok:-0}" "$(cpu_us "time-$t-$r-sipwake" "$n")" "$b"
  res "round target=$t round=$r tool=sipwake rate=${rate:-0} ok=${ok:-0} cpu_us=$(cpu_us "time-$t-$r-sipwake" "$n") target_pct=$b"
}
TARGETS="sink"
[ "$EMULATOR" = 1 ] && TARGETS="sink emulator"
for r in $(seq 1 "$ROUNDS"); do
  round sink "$SINK_PORT" "$SINK_PID" "$SINK_COUNT" "$r"
  [ "$EMULATOR" = 1 ] && round emulator "$EMU_PORT" "$EMU" "$COUNT" "$r"
done

# stat VALUES...: "median [min-max]" of numbers (NA ignored)
stat() {
  printf '%s\n' "$@" | grep -v NA | sort -g | awk '{a[NR]=$1} END { if (!NR) { print "NA"; exit }
    printf "%s%s [%s-%s]", a[int((NR+1)/2)], u, a[1], a[NR] }' u="${UNIT:-}"
}
say ""
say "## summary (median of $ROUNDS rounds [min-max])"
say "$(printf '%-9s %-8s %-24s %s\n' target tool 'pushes/s' 'cpu us/push')"
for t in $TARGETS; do
  for tool in h2load sipwake; do
    # shellcheck disable=SC2086
    say "$(printf '%-9s %-8s %-24s %s\n' "$t" "$tool" "$(stat ${RATE[$t-$tool]})" "$(stat ${CPU[$t-$tool]})")"
  done
  # shellcheck disable=SC2086
  say "$(printf '%-9s %-8s %-24s %s\n' "$t" ratio "$(UNIT=x stat ${RATIO[$t]})" 'sipwake/h2load, per round')"
done
say "# sink: answers 200 to anything, not the bottleneck; emulator: checks requests, caps both."
say "# ok: answered 200. cpu: user+sys CPU time of the process / pushes. Bar (issue 4): sipwake >= 0.7x h2load."
