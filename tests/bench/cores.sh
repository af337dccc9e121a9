#!/usr/bin/env bash
# cores.sh — what a second sipwake process on a second core buys (issue 15, "More than one
# core"; README "Architecture"). Not part of `make bench`: run it by hand.
#
# The same total call load (RATES, calls/s, INVITE/100/180/200/ACK/BYE/200 with Record-Route
# honoured, DUR s per step) is offered by two SIPp UAC/UAS pairs, each with its own CALLEES
# callees (users a00000.. and b00000..), half the rate each, in three set-ups:
#   one      one sipwake on 127.0.0.1:$PORT; both pairs register their callees there and
#            call through it
#   two      two independent sipwake processes (own config, own SQLite database) on $PORT
#            and $PORT2; pair a uses the first, pair b the second; the kernel places them
#   pinned   the same two, pinned with `taskset -a` to CPU 0 and CPU 1
# SIPp runs in every set-up with the same four processes at the same rates, so what changes
# between the rows is the proxy side only. A step PASSes when both pairs completed every
# call, each reached 90 % of its rate and neither saw a retransmission; a set-up's ramp stops
# at its first failing step.
# Each step's line: calls completed and failed (both pairs), retransmissions, achieved calls/s
# (sum of the two pairs), the CPU the sipwake process(es) used (% of one core, all threads),
# CPU µs per completed call, the CPU of the four SIPp processes (% of one core) and the whole
# machine's busy time (% of all CPUs, from /proc/stat: SIPp, sipwake and everything else).
#
# Knobs (environment): PORT (5070), PORT2 (5072), RATES ("2000 4000 6000 8000 10000", total
# calls/s), DUR (5), CALLEES (500 per pair), MODES ("one two pinned"), SIPWAKE
# (server/sipwake), OUT (var/bench/<time>-cores). Never fails on a timing.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tests/bench"
PORT=${PORT:-5070}
PORT2=${PORT2:-5072}
RATES=${RATES:-"2000 4000 6000 8000 10000"}
DUR=${DUR:-5}
CALLEES=${CALLEES:-500}
MODES=${MODES:-"one two pinned"}
SIPWAKE=${SIPWAKE:-$ROOT/server/sipwake}
UAS_A=5080 UAS_B=5082 UAC_A=5062 UAC_B=5064
. "$ROOT/tests/bench/out.sh"
bench_out cores
ulimit -n 65536 2>/dev/null || true
SUMMARY="$OUT/summary.txt"
CLK_TCK=$(getconf CLK_TCK)
# shellcheck disable=SC2034 # read by lib.sh (step)
LPORT=$UAC_A
PID=""
. "$HERE/lib.sh"

# the step helper of lib.sh reads its PID's CPU ticks; the pairs' steps run with no PID (this
# script reads the sipwake processes' ticks around both pairs itself)
lib_ticks() { [ -n "$1" ] || { echo 0; return; }; local t=0 p; for p in $(pgrep -P "$1") "$1"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
ticks() { lib_ticks "$@"; }

# lib.sh's sipwake config, with the admin off: two instances cannot both listen on :8080
sipwake_conf() {  # dir port
  [ -f "$1/bench.p8" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$1/bench.p8" 2>/dev/null
  cat > "$1/sipwake.conf" <<CONF
[general]
data_dir = $1
[log]
level = warn
[sip]
listen = udp:127.0.0.1:$2
[auth]
enabled = no
[registrar]
max_expires = 7200
[push]
apns_key_file = $1/bench.p8
apns_key_id = KEY1234567
apns_team_id = TEAM123456
apns_host = 127.0.0.1
apns_port = 9
apns_sandbox_host = 127.0.0.1
apns_sandbox_port = 9
[store]
path = $1/sipwake.db
[policy]
file = $ROOT/policies/default.lua
lua_path = $ROOT/lua
[admin]
enabled = no
CONF
}

P1="" P2="" UA="" UB=""
stop_all() {
  local p
  for p in $UA $UB; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  UA="" UB=""
  for p in $P1 $P2; do PID=$p stop_target; done
  P1="" P2="" PID=""
}
trap stop_all EXIT

# users PREFIX COUNT -> SIPp injection file (the callee's user; a token field reg_plain ignores)
callee_csv() { perl -e 'print "SEQUENTIAL\n"; printf "%s%05d;%064x;\n", $ARGV[0], $_, $_ for 0 .. $ARGV[1] - 1' "$1" "$2"; }
# calls PREFIX N CALLEES -> the callee of each call, round robin
calls_csv() { perl -e 'print "SEQUENTIAL\n"; printf "%s%05d;\n", $ARGV[0], $_ % $ARGV[2] for 0 .. $ARGV[1] - 1' "$1" "$2" "$3"; }

start_uas() {  # dir port -> pid on stdout
  (cd "$1" && exec sipp -sf "$HERE/uas_call.xml" -i 127.0.0.1 -p "$2" -t u1 -nostdin \
     -default_behaviors all,-abortunexp -buff_size 4194304 -max_recv_loops 10000 \
     -max_sched_loops 10000 -trace_err -error_file uas-errors.log -max_log_size 2000000 \
     > /dev/null 2> uas.stderr) &
  echo $!
}

# machine busy and total jiffies from /proc/stat
cpu_now() { awk '/^cpu / {b = $2 + $3 + $4 + $7 + $8; t = b + $5 + $6; print b, t; exit}' /proc/stat; }

# register CALLEES callees of PREFIX from UAS_PORT at the sipwake on TARGET_PORT
register() {  # dir prefix uas_port target_port
  callee_csv "$2" "$CALLEES" > "$1/callees-$2.csv"
  local ok
  read -r ok _ < <(PORT=$4 LPORT=$3 PID="" step "$1/register-$2" 1000 "$CALLEES" "$1/callees-$2.csv" \
    "$HERE/reg_plain.xml" -set contact_port "$3")
  log "$2: $ok of $CALLEES callees registered at :$4"
}

say "# sipwake: one process against two, same total load from two SIPp pairs, $(date -Is)"
say "# $(nproc) CPUs, $(uname -r), $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1), $("$SIPWAKE" --version), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
say "# load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
say "# rates (total calls/s): $RATES, ${DUR}s per step, $CALLEES callees per pair; results in $OUT"
ROW='%-7s %6s %7s %6s %7s %8s %11s %9s %9s %10s  %s\n'
printf "$ROW" setup rate ok failed retrans achieved 'sipwake cpu%' 'µs/call' 'SIPp cpu%' 'machine%' verdict | tee -a "$SUMMARY"
declare -A BEST
for m in $MODES; do
  dir="$OUT/$m"; mkdir -p "$dir/a" "$dir/b"
  log "== $m"
  sipwake_conf "$dir/a" "$PORT"
  PID=""; start_target sipwake "$dir/a" || { stop_all; continue; }
  P1=$PID
  TA=$PORT TB=$PORT
  if [ "$m" != one ]; then
    sipwake_conf "$dir/b" "$PORT2"
    PORT_SAVE=$PORT; PORT=$PORT2; PID=""
    start_target sipwake "$dir/b" || { PORT=$PORT_SAVE; stop_all; continue; }
    P2=$PID; PORT=$PORT_SAVE; TB=$PORT2
  fi
  if [ "$m" = pinned ]; then
    taskset -a -p -c 0 "$P1" > /dev/null && taskset -a -p -c 1 "$P2" > /dev/null ||
      log "taskset failed: $m is not pinned"
  fi
  register "$dir" a $UAS_A "$TA"
  register "$dir" b $UAS_B "$TB"
  UA=$(start_uas "$dir/a" $UAS_A)
  UB=$(start_uas "$dir/b" $UAS_B)
  sleep 0.5
  BEST[$m]=0
  for r in $RATES; do
    half=$((r / 2)) calls=$((r / 2 * DUR))
    calls_csv a "$calls" "$CALLEES" > "$dir/a/calls.csv"
    calls_csv b "$calls" "$CALLEES" > "$dir/b/calls.csv"
    s0=$(ticks "$P1"); [ -n "$P2" ] && s0=$((s0 + $(ticks "$P2")))
    g0=$(( $(ticks "$UA") + $(ticks "$UB") ))
    read -r b0 t0 < <(cpu_now)
    (PORT=$TA LPORT=$UAC_A PID="" step "$dir/a/calls_$r" "$half" "$calls" "$dir/a/calls.csv" \
      "$HERE/uac_call.xml" -default_behaviors all,-abortunexp > "$dir/a/step_$r" 2>> "$dir/step.err"
      awk '{print $16 + $17}' /proc/$BASHPID/stat > "$dir/a/uac_ticks_$r") &
    ja=$!
    (PORT=$TB LPORT=$UAC_B PID="" step "$dir/b/calls_$r" "$half" "$calls" "$dir/b/calls.csv" \
      "$HERE/uac_call.xml" -default_behaviors all,-abortunexp > "$dir/b/step_$r" 2>> "$dir/step.err"
      awk '{print $16 + $17}' /proc/$BASHPID/stat > "$dir/b/uac_ticks_$r") &
    jb=$!
    wait $ja $jb
    read -r b1 t1 < <(cpu_now)
    s1=$(ticks "$P1"); [ -n "$P2" ] && s1=$((s1 + $(ticks "$P2")))
    g1=$(( $(ticks "$UA") + $(ticks "$UB") + $(cat "$dir/a/uac_ticks_$r") + $(cat "$dir/b/uac_ticks_$r") ))
    read -r oka fa ra ela acha _ va < "$dir/a/step_$r"
    read -r okb fb rb elb achb _ vb < "$dir/b/step_$r"
    ok=$((oka + okb)) fail=$((fa + fb))
    retr=$(( ${ra//NA/0} + ${rb//NA/0} ))
    ach=$(( ${acha//NA/0} + ${achb//NA/0} ))
    el=$(awk -v a="$ela" -v b="$elb" 'BEGIN{print (a > b ? a : b)}')
    cpu=$(awk -v d=$((s1 - s0)) -v e="$el" -v hz="$CLK_TCK" 'BEGIN{if (e > 0) printf "%.0f", 100 * d / hz / e; else print "NA"}')
    per=$(awk -v d=$((s1 - s0)) -v n="$ok" -v hz="$CLK_TCK" 'BEGIN{if (n > 0) printf "%.0f", 1e6 * d / hz / n; else print "NA"}')
    gen=$(awk -v d=$((g1 - g0)) -v e="$el" -v hz="$CLK_TCK" 'BEGIN{if (e > 0) printf "%.0f", 100 * d / hz / e; else print "NA"}')
    mach=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN{if (t > 0) printf "%.0f", 100 * b / t; else print "NA"}')
    v=PASS
    [ "$va" = PASS ] || v=$va
    [ "$vb" = PASS ] || [ "$v" != PASS ] || v=$vb
    printf "$ROW" "$m" "$r" "$ok" "$fail" "$retr" "$ach" "$cpu" "$per" "$gen" "$mach" "$v (a: $va, b: $vb)" | tee -a "$SUMMARY"
    rm -f "$dir"/[ab]/calls.csv
    if [ "$v" = PASS ]; then BEST[$m]=$ach; else break; fi
    sleep 2
  done
  stop_all
done
say ""
say "## best clean step (calls/s achieved, both pairs together)"
for m in $MODES; do
  [ -n "${BEST[$m]:-}" ] || continue
  ratio=$(awk -v a="${BEST[$m]}" -v b="${BEST[one]:-0}" 'BEGIN{if (b > 0) printf "%.2fx", a / b; else print "n/a"}')
  say "$(printf '%-7s %8s  %s of one' "$m" "${BEST[$m]}" "$ratio")"
done
say "# sipwake cpu%: the sipwake process(es), all threads, % of one core over the step; µs/call: that CPU per completed call;"
say "# SIPp cpu%: the four SIPp processes (two UAS, two UAC), % of one core over the step;"
say "# machine%: every CPU's busy time over the step (SIPp's four processes included), % of the whole machine."
