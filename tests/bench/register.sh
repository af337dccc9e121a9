#!/usr/bin/env bash
# register.sh — `make bench`: REGISTER throughput and memory of sipwake against Kamailio 5.6,
# in one run, on loopback, with SIPp.
#
# Three registrars, one after the other, each on 127.0.0.1:$PORT (UDP):
#   kamailio-mem     usrloc in memory only (db_mode 0)             — the bar
#   kamailio-sqlite  usrloc writing through to SQLite (db_mode 1)
#   sipwake          persisting every binding to SQLite, auth off, policies/default.lua
#   sipwake-mongo    the same on the MongoDB backend, against tests/emulators/mongo.py (only
#                    when TARGETS names it: its figures are bounded by the emulator, not by a
#                    MongoDB server)
# For each: idle RSS; MEM_REGS distinct REGISTERs (RFC 8599 push params) at MEM_RATE/s and
# the RSS after (per binding); then a rate ramp (RATES, DUR s per step, fresh users each
# step) stopping at the first step that fails. A step PASSes when every REGISTER got its 200,
# the achieved rate is at least 90 % of the target and SIPp saw no retransmission; after the
# first failing step, REFINE steps bisect between the last passing and the failing rate (down
# to GRAIN REGISTER/s), each once the target has settled (lib.sh settle); the same rule for
# every target. Every step, and each target's memory and restart figures, also go to
# results.tsv (lib.sh res), which tests/bench/report.pl reads (tests/bench/runs.sh: the
# median of several runs). For
# sipwake it also times a restart with the MEM_REGS bindings stored (until "ready").
# Latency: SIPp's REGISTER-to-200 time of every REGISTER of a ramp step (RTD 1), median and
# 99th percentile in whole ms (SIPp's resolution); sipwake answers once the binding is
# committed, so this includes its store commit (group commit: one commit when idle).
# Kamailio runs as ../shared/bench measures it: TLSF allocator, 4 GB shm, 2 UDP workers.
#
# RETRY (1): a failing ramp or refinement step is run once more, after the target has
# settled, and that second run's verdict counts (0: no second run).
# Knobs (environment): PORT (5070), LPORT (5061, SIPp's), RATES ("1000 5000 10000 20000 30000 40000 50000 60000"),
# REFINE (3), GRAIN (500), SETTLE_MAX (40 s), DUR (10),
# MEM_REGS (100000), MEM_RATE (5000, as ../shared/bench does), TARGETS ("kamailio-mem kamailio-sqlite sipwake"),
# WIRE_REGS (5000 REGISTERs captured on the wire per step; 0: no capture), WIRE_DELAY (DUR/3 s),
# WIRE_SNAP (1500 bytes), KEEP_PCAP (1: keep each step's lo.pcap), GEN_NICE (0, SIPp's nice),
# OUT (result directory, default var/bench/<time>). Prints a summary; never fails on a timing.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tests/bench"
PORT=${PORT:-5070}
RATES=${RATES:-"1000 5000 10000 20000 30000 40000 50000 60000"}
REFINE=${REFINE:-3}
GRAIN=${GRAIN:-500}
DUR=${DUR:-10}
MEM_REGS=${MEM_REGS:-100000}
MEM_RATE=${MEM_RATE:-5000}
WIRE_REGS=${WIRE_REGS:-5000}
WIRE_SNAP=${WIRE_SNAP:-1500}
WIRE_DELAY=${WIRE_DELAY:-$((DUR / 3))}
TARGETS=${TARGETS:-"kamailio-mem kamailio-sqlite sipwake"}
SIPWAKE=${SIPWAKE:-$ROOT/server/sipwake}
LPORT=${LPORT:-5061}
. "$ROOT/tests/bench/out.sh"
bench_out ''
ulimit -n 65536 2>/dev/null || true
SUMMARY="$OUT/summary.txt"
PID=""
CLK_TCK=$(getconf CLK_TCK)

. "$HERE/lib.sh"

# median and 99th percentile of RTD 1 (ms) from SIPp's -trace_rtt files in a step directory
latency() {
  cat "$1"/*_rtt.csv 2>/dev/null | awk -F';' '$3 == 1 {print $2}' | sort -n |
    awk '{v[NR] = $1} END {if (NR == 0) {print "NA NA"; exit}
      m = v[int((NR + 1) / 2)]; p = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]; printf "%d %d\n", m, p}'
}

declare -A BEST BEST_FAILS RSS_PER IDLE_RSS LOADED_RSS MEM_FAILS RESTART TOP
# one ramp step of target $t at rate $1 (phase $2: ramp, refine or retry): sets v
reg_step() {
  local r=$1 phase=$2 calls=$(($1 * DUR)) ok fail retr el ach cpu p50 p99 sd="$dir/reg_$1" u="r$1x"
  # a retry registers users of its own (new bindings, as the first try), in a directory of its own
  [ "$phase" = retry ] && { sd="$dir/retry_$r"; u="q${r}x"; }
  users "$u" "$calls" > "$dir/step.csv"
  mkdir -p "$sd"
  wire_start "$sd" $((WIRE_REGS * 2))
  read -r ok fail retr el ach cpu v < <(step "$sd" "$r" "$calls" "$dir/step.csv" "$HERE/reg.xml" -set contact_port 5999 -trace_rtt -rtt_freq 1)
  read -r p50 p99 < <(latency "$sd")
  local w wn wl w1 w2 w3 wd
  w=$(wire_read "$sd" "$HERE/reg_wire.pl" --port "$PORT" --uac-port "$LPORT")
  CAP="" # stopped by wire_read, in its subshell
  read -r _ wn wl w1 w2 w3 wd <<< "${w:-wire 0 0 NA NA NA NA}"
  printf '%-16s %-7s %7s %8s %8s %6s %7s %8s %9s %5s %6s %6s  %-7s %6s %4s %4s %s\n' "$t" "$phase" "$r" "$calls" "$ok" "$fail" "$retr" "$el" "$ach" "$cpu" "$p50" "$p99" "$v" "$wn" "$wl" "${wd:-NA}" "$w1/$w2/$w3" | tee -a "$SUMMARY"
  res "step target=$t phase=$phase rate=$r offered=$calls ok=$ok failed=$fail retrans=$retr elapsed=$el achieved=$ach cpu=$cpu med_ms=$p50 p99_ms=$p99 verdict=$v" \
    "wire_n=$wn wire_lost=$wl wire_drop=${wd:-NA} sum_us=$w1/$w2/$w3"
  rm -f "$dir/step.csv" "$sd"/*_rtt.csv
  [ "${ach:-0}" -gt "${TOP[$t]:-0}" ] 2> /dev/null && TOP[$t]=$ach
  if [ "$v" = PASS ]; then BEST[$t]=$ach; BEST_FAILS[$t]=$fail; fi
}
say "# sipwake REGISTER benchmark $(date -Is)"
say "# $(nproc) CPUs, $(uname -r), $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1), $(kamailio -v 2>/dev/null | head -1 | cut -c1-40), $("$SIPWAKE" --version)"
say "# rates: $RATES, ${DUR}s per step; memory phase: $MEM_REGS users at $MEM_RATE/s; results in $OUT"
# retry RATE: a step that failed is run once more after the target has settled (phase
# "retry"), and that run's verdict counts: one stall of this shared machine must not end a
# target's ramp (RETRY=0: no second chance); the same rule for every target
retry() {
  [ "$v" = PASS ] || [ "${RETRY:-1}" = 0 ] && return 0
  log "$t: step $1 REGISTER/s: $v; settled in $(settle) s; once more"
  reg_step "$1" retry
}
for t in $TARGETS; do
  dir="$OUT/$t"; mkdir -p "$dir"
  log "== $t"
  start_target "$t" "$dir" || continue
  IDLE_RSS[$t]=$(pss_kb "$PID")
  users m "$MEM_REGS" > "$dir/mem.csv"
  read -r ok fail retr el ach cpu v < <(step "$dir/mem" "$MEM_RATE" "$MEM_REGS" "$dir/mem.csv" "$HERE/reg.xml" -set contact_port 5999)
  MEM_FAILS[$t]=$fail
  log "$t memory phase: $ok ok, $fail failed, $retr retransmissions"
  # let transactions and retransmission state drain (sipwake keeps UDP server
  # transactions for Timer J = 32 s) so RSS counts the bindings
  sleep ${SETTLE:-34}
  LOADED_RSS[$t]=$(pss_kb "$PID")
  RSS_PER[$t]=$(awk -v a="${IDLE_RSS[$t]}" -v b="${LOADED_RSS[$t]}" -v n="$MEM_REGS" 'BEGIN{printf "%.0f", (b-a)*1024/n}')
  if [ "$t" = sipwake ]; then
    n=$(sqlite3 "$dir/sipwake.db" 'select count(*) from location')
    stop_target
    t0=$(date +%s.%N)
    "$SIPWAKE" --config "$dir/sipwake.conf" > "$dir/restart.log" 2>&1 & PID=$!
    for _ in $(seq 1 600); do grep -q 'sipwake ready' "$dir/restart.log" && break; sleep 0.01; done
    t1=$(date +%s.%N)
    RESTART[$t]=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
    log "restart with $n stored bindings ready in ${RESTART[$t]} s"
    RESTART_S=${RESTART[$t]}
    RESTART[$t]="${RESTART[$t]} s ($n bindings)"
    wait_udp
  fi
  rm -f "$dir/mem.csv"
  BEST[$t]=0; BEST_FAILS[$t]=0
  res "memory target=$t idle_kb=${IDLE_RSS[$t]} loaded_kb=${LOADED_RSS[$t]} regs=$MEM_REGS per_binding_b=${RSS_PER[$t]} failed=${MEM_FAILS[$t]} restart_s=${RESTART_S:-NA}"
  RESTART_S=""
  printf '%-16s %-7s %7s %8s %8s %6s %7s %8s %9s %5s %6s %6s  %-7s %6s %4s %4s %s\n' target phase rate calls ok failed retrans elapsed achieved cpu% p50ms p99ms verdict wire-n lost drop 'REGISTER->200 µs med/99/99.9' | tee -a "$SUMMARY"
  # the ramp: RATES until a step fails, then REFINE steps bisecting between the last passing
  # and the failing rate (down to GRAIN REGISTER/s); the same rule for every target
  pass=0 failed="" n=0
  for r in $RATES; do
    reg_step "$r" ramp
    retry "$r"
    if [ "$v" = PASS ]; then pass=$r; sleep 2; else failed=$r; break; fi
  done
  while [ -n "$failed" ] && [ "$n" -lt "$REFINE" ] && m=$(next_rate "$pass" "$failed" "$GRAIN"); do
    log "$t: settled in $(settle) s; refining at $m REGISTER/s"
    reg_step "$m" refine
    retry "$m"
    if [ "$v" = PASS ]; then pass=$m; else failed=$m; fi
    n=$((n + 1))
  done
  stop_target
done

say ""
say "## summary"
base=${BEST[kamailio-mem]:-0}
printf '%-16s %14s %10s %12s %14s %14s %s\n' target 'REGISTER/s' 'vs kam-mem' 'max achieved' 'mem failures' 'mem/binding' 'restart' | tee -a "$SUMMARY"
for t in $TARGETS; do
  [ -n "${BEST[$t]:-}" ] || continue
  ratio=$(awk -v a="${BEST[$t]}" -v b="$base" 'BEGIN{ if (b>0) printf "%.2fx", a/b; else print "n/a"}')
  printf '%-16s %14s %10s %12s %14s %12s B %s\n' "$t" "${BEST[$t]}" "$ratio" "${TOP[$t]:-0}" "${MEM_FAILS[$t]}" "${RSS_PER[$t]}" "${RESTART[$t]:-}" | tee -a "$SUMMARY"
done
say "# REGISTER/s: achieved rate of the highest step that passed, ramp or refinement (every REGISTER answered 200, >= 90 % of the target rate, no retransmission); 0 if none did."
say "# max achieved: the highest achieved rate of any step, passed or not."
say "# wire-n: REGISTERs measured on the wire (tcpdump on lo, about WIRE_REGS=$WIRE_REGS from WIRE_DELAY=$WIRE_DELAY s into the step): the REGISTER arriving at the registrar -> its 200 leaving, kernel timestamps, matched by Call-ID + CSeq; lost: REGISTERs that got no answer within the capture (one answered 503 or 401 is neither timed nor lost); drop: packets the kernel dropped from the capture (NA: no capture)."
say "# mem/binding: (memory after $MEM_REGS registrations and the settle time - idle memory) / $MEM_REGS; memory is the PSS summed over the registrar's processes (RSS for sipwake's single process)."
say "# Bars (issue 2): sipwake >= 1.0x kamailio-mem with 0 failures; <= 1024 B per binding; restart ready < 2 s."
