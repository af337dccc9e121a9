#!/usr/bin/env bash
# calls.sh — `make bench` (second part): calls per second through the proxy, sipwake against
# Kamailio 5.6, in one run, on loopback, with SIPp.
#
# For each target (kamailio-mem: tm, rr, usrloc in memory, as ../shared/bench runs it;
# sipwake: auth off, policies/default.lua), one after the other on 127.0.0.1:$PORT (UDP):
# CALLEES users register with their Contact at a SIPp UAS on 127.0.0.1:$UAS_PORT, then a rate
# ramp (RATES, DUR s per step) of calls INVITE/100/180/200/ACK/BYE/200 with Record-Route
# honoured, stopping at the first step that fails. A step PASSes when every call completed,
# the achieved rate is at least 90 % of the target and SIPp saw no retransmission.
# Latency: SIPp's INVITE-to-200 time of every call of the step (RTD 1), median and 99th
# percentile, in whole milliseconds (SIPp's resolution: 0 is under 1 ms); the proxy's added latency is that minus the same measure with the UAC calling
# the UAS directly (no proxy), taken once at LAT_RATE calls/s.
# On the wire, below 1 ms: during each step tcpdump captures the proxy's UDP port on lo (ns
# kernel timestamps, the first WIRE_CALLS calls' packets at most, WIRE_SNAP bytes of each) and
# tests/bench/calls_wire.pl reads off it, per call, the time the proxy held the INVITE (caller's
# INVITE in -> INVITE out to the callee) and the 200 (callee's 200 in -> 200 out to the caller),
# matched by Call-ID + CSeq + ports: median, p99, p99.9 in µs, with the number of calls measured.
#
# Knobs (environment): PORT (5070), UAS_PORT (5080), RATES ("500 1000 2000 3000 4000 5000
# 6000 8000 10000"), DUR (10), CALLEES (1000), LPORT (5062, the UAC's port), LAT_RATE (500),
# TARGETS ("kamailio-mem sipwake"), WIRE_CALLS (5000 calls captured per step; 0: no capture),
# WIRE_SNAP (1500 bytes), KEEP_PCAP (1: keep each step's lo.pcap), OUT (result directory,
# default var/bench/<time>-calls). Never fails on a timing.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tests/bench"
PORT=${PORT:-5070}
UAS_PORT=${UAS_PORT:-5080}
RATES=${RATES:-"500 1000 2000 3000 4000 5000 6000 8000 10000"}
DUR=${DUR:-10}
CALLEES=${CALLEES:-1000}
LAT_RATE=${LAT_RATE:-500}
WIRE_CALLS=${WIRE_CALLS:-5000}
WIRE_SNAP=${WIRE_SNAP:-1500}
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
CAP=""
stop_cap() { [ -n "$CAP" ] && kill -INT "$CAP" 2>/dev/null; wait "$CAP" 2>/dev/null; CAP=""; }
trap 'stop_cap; stop_target; stop_uas' EXIT

# the capture of a step (on the wire): the proxy's UDP port on lo, ns timestamps (the
# adapter's own clock when lo offers one), about 14 packets a call for the first WIRE_CALLS
# calls (-c), WIRE_SNAP bytes of each; sets CAP ("" when tcpdump cannot capture here)
TSTYPE=()
command -v tcpdump > /dev/null && tcpdump -i lo -J 2> /dev/null | grep -q adapter_unsynced && TSTYPE=(-j adapter_unsynced)
wire_start() {  # dir
  CAP=""
  [ "$WIRE_CALLS" -gt 0 ] 2> /dev/null && command -v tcpdump > /dev/null || return 0
  tcpdump -i lo -n "${TSTYPE[@]}" --time-stamp-precision=nano -B 32768 -s "$WIRE_SNAP" \
    -c $((WIRE_CALLS * 16)) -w "$1/lo.pcap" "udp port $PORT" 2> "$1/tcpdump.err" &
  CAP=$!
  for _ in $(seq 1 50); do grep -q listening "$1/tcpdump.err" && return 0; sleep 0.1; done
  log "tcpdump cannot capture on lo (see $1/tcpdump.err): no wire figures"
  stop_cap
}
# wire_stop DIR -> "n lost inv_med inv_p99 inv_p999 n200 lost200 ok_med ok_p99 ok_p999 nsum
# sum_med sum_p99 sum_p999 kernel_drops" (µs; NA when not captured)
wire_stop() {
  local d=$1 w
  [ -n "$CAP" ] || { echo "0 0 NA NA NA 0 0 NA NA NA 0 NA NA NA NA"; return; }
  stop_cap
  w=$(tcpdump -r "$d/lo.pcap" -n -tt --time-stamp-precision=nano -A 2> /dev/null |
    perl "$HERE/calls_wire.pl" --port "$PORT" --uac-port "$LPORT" --uas-port "$UAS_PORT")
  [ -n "${KEEP_PCAP:-}" ] || rm -f "$d/lo.pcap"
  [ -n "$w" ] || { log "calls_wire.pl read nothing from $d/lo.pcap"; w="wire 0 0 NA NA NA 0 0 NA NA NA 0 NA NA NA"; }
  echo "${w#wire } $(awk '/dropped by kernel/ {print $1; exit}' "$d/tcpdump.err")"
}

start_uas() {  # dir
  (cd "$1" && exec sipp -sf "$HERE/uas_call.xml" -i 127.0.0.1 -p "$UAS_PORT" -t u1 -nostdin \
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

declare -A BEST TOP LAT_MED LAT_P99 LAT_AT WIRE
ROW='%-14s %6s %7s %7s %6s %7s %8s %8s %5s %8s %8s  %-7s %6s %4s %4s %-20s %-20s %-20s\n'
printf "$ROW" target rate calls ok failed retrans elapsed achieved cpu% 'med ms' 'p99 ms' verdict \
  wire-n lost drop 'INVITE µs med/99/99.9' '200 µs med/99/99.9' 'sum µs med/99/99.9' | tee -a "$SUMMARY"
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
  start_uas "$dir"
  BEST[$t]=0
  for r in $RATES; do
    calls=$((r * DUR))
    calls_csv "$calls" "$CALLEES" > "$dir/calls.csv"
    mkdir -p "$dir/calls_$r"
    wire_start "$dir/calls_$r"
    read -r ok fail retr el ach cpu v < <(step "$dir/calls_$r" "$r" "$calls" "$dir/calls.csv" "$HERE/uac_call.xml" "${UAC[@]}")
    read -r med p99 < <(latency "$dir/calls_$r")
    read -r wn wl wi1 wi2 wi3 wo wol wo1 wo2 wo3 wsn ws1 ws2 ws3 wdrop < <(wire_stop "$dir/calls_$r")
    WIRE[$t $r]="$wn $((wl + wol)) ${wdrop:-NA} $wi1/$wi2/$wi3 $wo1/$wo2/$wo3 $ws1/$ws2/$ws3"
    # shellcheck disable=SC2086 # WIRE's fields
    printf "$ROW" "$t" "$r" "$calls" "$ok" "$fail" "$retr" "$el" "$ach" "$cpu" "$med" "$p99" "$v" ${WIRE[$t $r]} | tee -a "$SUMMARY"
    rm -f "$dir/calls.csv" "$dir/calls_$r"/*_rtt.csv
    [ "${ach:-0}" -gt "${TOP[$t]:-0}" ] 2>/dev/null && TOP[$t]=$ach
    if [ "$v" = PASS ]; then BEST[$t]=$ach; LAT_MED[$t]=$med; LAT_P99[$t]=$p99; LAT_AT[$t]=$r; else break; fi
    sleep 2
  done
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
WROW='%-14s %6s %7s %5s %5s %-22s %-22s %-22s\n'
printf "$WROW" target rate wire-n lost drop 'INVITE µs med/99/99.9' '200 µs med/99/99.9' 'sum µs med/99/99.9' | tee -a "$SUMMARY"
for t in $TARGETS; do
  for r in $RATES; do
    [ -n "${WIRE[$t $r]:-}" ] || continue
    # shellcheck disable=SC2086 # WIRE's fields
    printf "$WROW" "$t" "$r" ${WIRE[$t $r]} | tee -a "$SUMMARY"
  done
done
say "# wire-n: calls whose INVITE was measured (the first about WIRE_CALLS=$WIRE_CALLS calls of the step); lost: INVITEs or 200s that went into the proxy and, within the capture, never came out; drop: packets the kernel dropped from the capture (NA: no capture)."
say "# INVITE: caller's INVITE arriving at the proxy -> the proxy's INVITE to the callee; 200: callee's 200 arriving -> the proxy's 200 to the caller; sum: both, same call. Kernel timestamps on lo, matched by Call-ID + CSeq + ports."
say "# calls/s: achieved rate of the highest ramp step that passed (every call completed, >= 90 % of the target rate, no retransmission); 0 if none did."
say "# added latency: INVITE->200 through the proxy at its highest passing step minus the direct UAC->UAS figure, in whole ms (SIPp's resolution)."
say "# Bar (issue 3): sipwake >= 1.0x kamailio-mem with 0 failed calls."
