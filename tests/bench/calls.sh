#!/usr/bin/env bash
# calls.sh — `make bench` (second part): calls per second through the proxy, sipwake against
# Kamailio 5.6, in one run, on loopback, with SIPp.
#
# For each target (kamailio-mem: tm, rr, usrloc in memory, as ../shared/bench runs it;
# sipwake: auth off, policies/default.lua), one after the other on 127.0.0.1:$PORT (UDP):
# CALLEES users register with their Contact at a SIPp UAS on 127.0.0.1:$UAS_PORT, then a rate
# ramp (RATES, DUR s per step) of calls INVITE/100/180/200/ACK/BYE/200 with Record-Route
# honoured, stopping at the first step that fails, then REFINE steps bisecting between the last
# passing and the failing rate (down to GRAIN calls/s), each after the target has settled (a
# second under 5 % CPU, lib.sh settle); the same rule for both targets. A step PASSes when
# every call completed, none was refused (503), the achieved rate is at least 90 % of the
# target and SIPp saw no retransmission. Then one overload step at OVERLOAD x the best clean
# step's rate: offered, completed, refused with 503 (uac_call.xml counts them), failed,
# retransmissions, completed calls/s; the bar (issue 15): completed + 503 >= 99 % of offered
# and completed calls/s >= the clean step's.
# Latency: SIPp's INVITE-to-200 time of every call of the step (RTD 1), median and 99th
# percentile, in whole milliseconds (SIPp's resolution: 0 is under 1 ms); the proxy's added
# latency is that minus the same measure with the UAC calling the UAS directly (no proxy),
# taken once at LAT_RATE calls/s.
# On the wire, below 1 ms: during each step tcpdump captures the proxy's UDP port on lo (ns
# kernel timestamps, a window of about WIRE_CALLS calls starting WIRE_DELAY s into the step —
# the middle, not the start-up — WIRE_SNAP bytes of each packet) and tests/bench/calls_wire.pl
# reads off it, per call, the time the proxy held the INVITE (caller's INVITE in -> INVITE out
# to the callee) and the 200 (callee's 200 in -> 200 out to the caller), matched by Call-ID +
# CSeq + ports: median, p99, p99.9 in µs, with the number of calls measured.
# Every step and the overload step are also written to results.tsv (lib.sh res), which
# tests/bench/report.pl reads (tests/bench/runs.sh: the median of several runs).
#
# RETRY (1): a failing ramp or refinement step is run once more, after the target has
# settled, and that second run's verdict counts (0: no second run).
# Knobs (environment): PORT (5070), UAS_PORT (5080), RATES ("500 1000 2000 3000 4000 5000
# 6000 8000 10000 12000 14000"), REFINE (3), GRAIN (100), OVERLOAD (1.25; 0: no overload
# step), DUR (10), CALLEES (1000), LPORT (5062, the UAC's port), LAT_RATE (500),
# TARGETS ("kamailio-mem sipwake"), WIRE_CALLS (5000 calls captured per step; 0: no capture),
# WIRE_DELAY (DUR/3 s), WIRE_SNAP (1500 bytes), KEEP_PCAP (1: keep each step's lo.pcap),
# SETTLE_MAX (40 s), GEN_NICE (0: the nice value of SIPp, UAC and UAS), OUT (result directory, default var/bench/<time>-calls). Never fails on
# a timing.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tests/bench"
PORT=${PORT:-5070}
UAS_PORT=${UAS_PORT:-5080}
RATES=${RATES:-"500 1000 2000 3000 4000 5000 6000 8000 10000 12000 14000"}
REFINE=${REFINE:-3}
GRAIN=${GRAIN:-100}
OVERLOAD=${OVERLOAD:-1.25}
DUR=${DUR:-10}
CALLEES=${CALLEES:-1000}
LAT_RATE=${LAT_RATE:-500}
WIRE_CALLS=${WIRE_CALLS:-5000}
WIRE_SNAP=${WIRE_SNAP:-1500}
WIRE_DELAY=${WIRE_DELAY:-$((DUR / 3))}
TARGETS=${TARGETS:-"kamailio-mem sipwake"}
SIPWAKE=${SIPWAKE:-$ROOT/server/sipwake}
LPORT=${LPORT:-5062}
. "$ROOT/tests/bench/out.sh"
bench_out calls
ulimit -n 65536 2>/dev/null || true
SUMMARY="$OUT/summary.txt"
PID=""
UAS=""
CLK_TCK=$(getconf CLK_TCK)
. "$HERE/lib.sh"

stop_uas() { [ -n "$UAS" ] && kill "$UAS" 2>/dev/null; wait "$UAS" 2>/dev/null; UAS=""; }
trap 'stop_cap; stop_target; stop_uas' EXIT
# wire_stop DIR -> "n lost inv_med inv_p99 inv_p999 n200 lost200 ok_med ok_p99 ok_p999 nsum
# sum_med sum_p99 sum_p999 kernel_drops" (µs; NA when not captured)
wire_stop() {
  local w
  w=$(wire_read "$1" "$HERE/calls_wire.pl" --port "$PORT" --uac-port "$LPORT" --uas-port "$UAS_PORT")
  [ -n "$w" ] || w="wire 0 0 NA NA NA 0 0 NA NA NA 0 NA NA NA NA"
  echo "${w#wire }"
}

start_uas() {  # dir
  (cd "$1" && exec nice -n "$GEN_NICE" sipp -sf "$HERE/uas_call.xml" -i 127.0.0.1 -p "$UAS_PORT" -t u1 -nostdin \
     -default_behaviors all,-abortunexp -buff_size 4194304 -max_recv_loops 10000 \
     -max_sched_loops 10000 -trace_err -error_file uas-errors.log -max_log_size 2000000 \
     > /dev/null 2> uas.stderr) &
  UAS=$!
  sleep 0.5
}

callees() { perl -e 'print "SEQUENTIAL\n"; printf "callee%05d;%064x;\n", $_, $_ for 0 .. $ARGV[0] - 1' "$1"; }
# the callee of each call, round robin over the registered ones
calls_csv() { perl -e 'print "SEQUENTIAL\n"; printf "callee%05d;\n", $_ % $ARGV[1] for 0 .. $ARGV[0] - 1' "$1" "$2"; }

# median and 99th percentile of RTD 1 (ms) from SIPp's -trace_rtt files in a step directory
latency() {
  cat "$1"/*_rtt.csv 2>/dev/null | awk -F';' '$3 == 1 {print $2}' | sort -n |
    awk '{v[NR] = $1} END {if (NR == 0) {print "NA NA"; exit}
      m = v[int((NR + 1) / 2)]; p = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]; printf "%d %d\n", m, p}'
}

# a multi-worker proxy may pass a 180 after the 200: ignored, not a failed call
UAC=(-trace_rtt -rtt_freq 1 -default_behaviors all,-abortunexp)
say "# sipwake call benchmark $(date -Is)"
say "# $(nproc) CPUs, $(uname -r), $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1), $(kamailio -v 2>/dev/null | head -1 | cut -c1-40), $("$SIPWAKE" --version)"
say "# rates: $RATES, ${DUR}s per step, $CALLEES callees; results in $OUT"

# the latency floor: UAC straight to the UAS
mkdir -p "$OUT/direct"
start_uas "$OUT/direct"
ORIG_PORT=$PORT; PORT=$UAS_PORT
calls_csv $((LAT_RATE * DUR)) "$CALLEES" > "$OUT/direct/calls.csv"
read -r ok fail retr el ach cpu v < <(PID=$UAS step "$OUT/direct/run" "$LAT_RATE" $((LAT_RATE * DUR)) "$OUT/direct/calls.csv" "$HERE/uac_call.xml" "${UAC[@]}")
PORT=$ORIG_PORT
read -r DIRECT_MED DIRECT_P99 < <(latency "$OUT/direct/run")
stop_uas
say "# direct UAC -> UAS at $LAT_RATE calls/s: $ok ok, $fail failed; INVITE->200 median ${DIRECT_MED} ms, p99 ${DIRECT_P99} ms"

declare -A BEST TOP LAT_MED LAT_P99 LAT_AT WIRE WSTEP OVL STEPS
ROW='%-14s %-8s %6s %7s %7s %6s %6s %7s %8s %8s %5s %8s %8s  %-7s %6s %4s %4s %-20s %-20s %-20s\n'
printf "$ROW" target phase rate calls ok 503 failed retrans elapsed achieved cpu% 'med ms' 'p99 ms' verdict \
  wire-n lost drop 'INVITE µs med/99/99.9' '200 µs med/99/99.9' 'sum µs med/99/99.9' | tee -a "$SUMMARY"
res "direct rate=$LAT_RATE med=$DIRECT_MED p99=$DIRECT_P99"
# one step of target $t at rate $1 (phase $2: ramp, refine, retry, overload): sets v, ach, ok, refused
run_step() {
  local r=$1 phase=$2 calls=$(($1 * DUR)) sd="$dir/calls_$1" el cpu med p99
  [ "$phase" = overload ] && sd="$dir/overload_$1"
  [ "$phase" = retry ] && sd="$dir/retry_$1"
  calls_csv "$calls" "$CALLEES" > "$dir/calls.csv"
  mkdir -p "$sd"
  wire_start "$sd" $((WIRE_CALLS * 16))
  local d0 kdrops
  d0=$(udp_drops "$PORT")
  read -r ok fail retr el ach cpu v < <(step "$sd" "$r" "$calls" "$dir/calls.csv" "$HERE/uac_call.xml" "${UAC[@]}")
  kdrops=$(($(udp_drops "$PORT") - d0))
  refused=$(cat "$sd/refused" 2> /dev/null || echo 0)
  read -r med p99 < <(latency "$sd")
  read -r wn wl wi1 wi2 wi3 wo wol wo1 wo2 wo3 wsn ws1 ws2 ws3 wdrop < <(wire_stop "$sd")
  CAP="" # stopped by wire_stop, in its subshell
  STEPS[$t]+=" $phase:$r"
  WIRE[$t $r]="$wn $((wl + wol)) ${wdrop:-NA} $wi1/$wi2/$wi3 $wo1/$wo2/$wo3 $ws1/$ws2/$ws3"
  WSTEP[$t $phase:$r]=${WIRE[$t $r]}
  # shellcheck disable=SC2086 # WIRE's fields
  printf "$ROW" "$t" "$phase" "$r" "$calls" "$ok" "$refused" "$fail" "$retr" "$el" "$ach" "$cpu" "$med" "$p99" "$v" ${WIRE[$t $r]} | tee -a "$SUMMARY"
  res "step target=$t phase=$phase rate=$r offered=$calls ok=$ok refused=$refused failed=$fail" \
    "retrans=$retr elapsed=$el achieved=$ach cpu=$cpu med_ms=$med p99_ms=$p99 verdict=$v" \
    "wire_n=$wn wire_lost=$((wl + wol)) wire_drop=${wdrop:-NA} inv_us=$wi1/$wi2/$wi3 ok_us=$wo1/$wo2/$wo3 sum_us=$ws1/$ws2/$ws3" \
    "rcv_drops=$kdrops"
  [ "$kdrops" -gt 0 ] && log "$t $phase $r: the kernel dropped $kdrops datagrams at the proxy's port (receive queue full)"
  rm -f "$dir/calls.csv" "$sd"/*_rtt.csv
  [ "${ach:-0}" -gt "${TOP[$t]:-0}" ] 2> /dev/null && TOP[$t]=$ach
  if [ "$v" = PASS ] && [ "$phase" != overload ]; then BEST[$t]=$ach; LAT_MED[$t]=$med; LAT_P99[$t]=$p99; LAT_AT[$t]=$r; fi
}
# retry RATE: a step that failed is run once more after the target has settled (phase
# "retry"), and that run's verdict counts: one stall of this shared machine must not end a
# target's ramp (RETRY=0: no second chance); the same rule for every target
retry() {
  [ "$v" = PASS ] || [ "${RETRY:-1}" = 0 ] && return 0
  log "$t: step $1 calls/s: $v; settled in $(settle) s; once more"
  run_step "$1" retry
}
for t in $TARGETS; do
  dir="$OUT/$t"; mkdir -p "$dir"
  log "== $t"
  start_target "$t" "$dir" || continue
  # the callees register from the UAS's own port (sipwake reaches a UDP phone at the address
  # its REGISTER came from, as behind NAT), then the UAS takes that port over; without push
  # params: this measures proxying (a UDP push binding not heard from within
  # [push] udp_awake_window is only pushed, not rung)
  callees "$CALLEES" > "$dir/callees.csv"
  read -r ok fail retr el ach cpu v < <(LPORT=$UAS_PORT step "$dir/register" 1000 "$CALLEES" "$dir/callees.csv" "$HERE/reg_plain.xml" -set contact_port "$UAS_PORT")
  log "$t: $ok of $CALLEES callees registered"
  if [ "$ok" != "$CALLEES" ]; then
    # (e.g. the UAS port still held by another process): no ramp of calls to nobody; the run
    # has no figures for this target, and report.pl says of how many runs each figure is
    say "# $t: only $ok of $CALLEES callees registered (see $dir/register/errors.log): not measured in this run"
    res "error target=$t what=callees_registered ok=$ok of=$CALLEES"
    stop_target
    continue
  fi
  start_uas "$dir"
  BEST[$t]=0
  # the ramp: RATES until a step fails, then REFINE steps bisecting between the last passing
  # and the failing rate (down to GRAIN calls/s); the same rule for every target
  pass=0 failed=""
  for r in $RATES; do
    run_step "$r" ramp
    retry "$r"
    if [ "$v" = PASS ]; then pass=$r; sleep 2; else failed=$r; break; fi
  done
  n=0
  while [ -n "$failed" ] && [ "$n" -lt "$REFINE" ] && m=$(next_rate "$pass" "$failed" "$GRAIN"); do
    log "$t: settled in $(settle) s; refining at $m calls/s"
    run_step "$m" refine
    retry "$m"
    if [ "$v" = PASS ]; then pass=$m; else failed=$m; fi
    n=$((n + 1))
  done
  # overload: OVERLOAD x the best clean step's rate, with the 503s counted (issue 15's bar)
  if [ "$pass" -gt 0 ] && [ "${OVERLOAD:-0}" != 0 ]; then
    o=$(awk -v p="$pass" -v f="$OVERLOAD" -v g="$GRAIN" 'BEGIN { printf "%d", int(p * f / g + 0.5) * g }')
    log "$t: settled in $(settle) s; overload step at $o calls/s"
    clean=${BEST[$t]}
    run_step "$o" overload
    # the completed rate while the calls were offered (lib.sh step's window): SIPp's elapsed
    # time also holds the wait for the last calls (up to -recv_timeout, 5 s, once one is lost)
    # (NA when SIPp never placed every call: no window to take a rate over)
    wok="" ws=""
    read -r wok ws < "$dir/overload_$o/window"
    wr=$(awk -v c="$wok" -v s="$ws" 'BEGIN { if (s > 0) printf "%.0f", c / s; else print "NA" }')
    ovl=$(awk -v c="$ok" -v r="$refused" -v n=$((o * DUR)) -v a="$wr" -v b="$clean" \
      'BEGIN { printf "%.1f %s", n ? 100 * (c + r) / n : 0, ((c + r) >= 0.99 * n && a != "NA" && a + 0 >= b) ? "MET" : "NOT-MET" }')
    OVL[$t]="$o $((o * DUR)) $ok $refused $fail $retr $wr $clean $ovl"
    res "overload target=$t factor=$OVERLOAD rate=$o clean_rate=$pass clean_achieved=$clean" \
      "window_ok=${wok:-0} window_s=${ws:-0} window_rate=$wr served_pct=${ovl% *} bar=${ovl#* }"
  fi
  stop_uas
  stop_target
done

say ""
say "## summary"
base=${BEST[kamailio-mem]:-0}
printf '%-14s %9s %10s %12s %22s  %s\n' target 'calls/s' 'vs kam-mem' 'max achieved' 'added latency med/p99' \
  'on the wire at that step: n, INVITE / 200 µs med/99/99.9' | tee -a "$SUMMARY"
for t in $TARGETS; do
  [ -n "${BEST[$t]:-}" ] || continue
  ratio=$(awk -v a="${BEST[$t]}" -v b="$base" 'BEGIN{ if (b>0) printf "%.2fx", a/b; else print "n/a"}')
  added=$(awk -v m="${LAT_MED[$t]:-NA}" -v p="${LAT_P99[$t]:-NA}" -v dm="$DIRECT_MED" -v dp="$DIRECT_P99" \
    'BEGIN{ if (m == "NA" || dm == "NA") print "n/a"; else printf "%d / %d ms", m - dm, p - dp}')
  read -r wn _ _ wi wo _ <<< "${WIRE[$t ${LAT_AT[$t]:-}]:-0 0 NA NA NA NA}"
  printf '%-14s %9s %10s %12s %22s  %s\n' "$t" "${BEST[$t]}" "$ratio" "${TOP[$t]:-0}" "$added (at ${LAT_AT[$t]:-?}/s)" \
    "$wn, $wi / $wo" | tee -a "$SUMMARY"
done
say ""
say "## the proxy's time on the wire (tcpdump on lo), every step"
WROW='%-14s %-14s %7s %5s %5s %-22s %-22s %-22s\n'
printf "$WROW" target phase:rate wire-n lost drop 'INVITE µs med/99/99.9' '200 µs med/99/99.9' 'sum µs med/99/99.9' | tee -a "$SUMMARY"
for t in $TARGETS; do
  for r in ${STEPS[$t]:-}; do
    [ -n "${WSTEP[$t $r]:-}" ] || continue
    # shellcheck disable=SC2086 # WSTEP's fields
    printf "$WROW" "$t" "$r" ${WSTEP[$t $r]} | tee -a "$SUMMARY"
  done
done
say ""
say "## overload: one step at ${OVERLOAD}x the best clean step's rate"
OROW='%-14s %6s %8s %8s %7s %7s %8s %9s %9s %7s  %s\n'
printf "$OROW" target rate offered completed 503 failed retrans 'calls/s*' 'clean/s' 'served%' 'bar: completed+503 >= 99 % offered, calls/s >= clean' | tee -a "$SUMMARY"
for t in $TARGETS; do
  [ -n "${OVL[$t]:-}" ] || continue
  # shellcheck disable=SC2086 # OVL's fields
  printf "$OROW" "$t" ${OVL[$t]} | tee -a "$SUMMARY"
done
say "# wire-n: calls whose INVITE was measured (about WIRE_CALLS=$WIRE_CALLS calls from WIRE_DELAY=$WIRE_DELAY s into the step); lost: INVITEs or 200s that went into the proxy and, within the capture, never came out; drop: packets the kernel dropped from the capture (NA: no capture)."
say "# INVITE: caller's INVITE arriving at the proxy -> the proxy's INVITE to the callee; 200: callee's 200 arriving -> the proxy's 200 to the caller; sum: both, same call. Kernel timestamps on lo, matched by Call-ID + CSeq + ports."
say "# calls/s: achieved rate (completed calls / elapsed) of the highest step that passed (every call completed, none refused, >= 90 % of the target rate, no retransmission), ramp and refinement (bisection between the last passing and the first failing step, REFINE=$REFINE steps, GRAIN=$GRAIN) alike; 0 if none did."
say "# overload calls/s*: calls completed (not refused) while the step's calls were being offered / that window (SIPp's 1 s rows, from the start to the row by which every call was placed); clean/s: the best clean step's achieved rate."
say "# added latency: INVITE->200 through the proxy at its highest passing step minus the direct UAC->UAS figure, in whole ms (SIPp's resolution)."
say "# Bar (issue 3): sipwake >= 1.0x kamailio-mem with 0 failed calls."
