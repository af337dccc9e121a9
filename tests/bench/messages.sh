#!/usr/bin/env bash
# messages.sh — `make bench` (fourth part): offline MESSAGE storage, sipwake against Kamailio
# 5.6's msilo on SQLite (tests/bench/kamailio-msilo.cfg), in one run, on loopback, with SIPp.
#
# For each target, one after the other on 127.0.0.1:$PORT (UDP):
#   store: a rate ramp (RATES, DUR s per step) of MESSAGEs for one phone that sleeps (for
#     sipwake a push binding whose app is asleep; for Kamailio a user without a registration,
#     which msilo stores), each to be answered 202 once stored (sipwake commits it first;
#     msilo's m_store writes it to SQLite before the 202); stopping at the first step that
#     fails. A step PASSes when every MESSAGE got its 202, the achieved rate is at least 90 %
#     of the target and SIPp saw no retransmission. Then the stored rows are counted: every
#     202 must have its row (lost = 202s - rows).
#   drain: DRAIN more MESSAGEs are stored for another phone, which then registers from a SIPp
#     UAS that answers each 200; drain rate = DRAIN / (time from the REGISTER to the last
#     MESSAGE answered). sipwake sends them one at a time, each after the previous one's 2xx
#     is recorded (in order, exactly once); msilo's m_dump sends them all at once.
# Knobs: PORT (5070), RATES ("200 500 1000 2000 3000 4000 6000 8000 10000 12000 16000"),
# DUR (5), DRAIN (2000),
# TARGETS ("kamailio-msilo sipwake"), OUT. Never fails on a timing.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tests/bench"
PORT=${PORT:-5070}
RATES=${RATES:-"200 500 1000 2000 3000 4000 6000 8000 10000 12000 16000"}
DUR=${DUR:-5}
DRAIN=${DRAIN:-2000}
TARGETS=${TARGETS:-"kamailio-msilo sipwake"}
SIPWAKE=${SIPWAKE:-$ROOT/server/sipwake}
LPORT=5061
PHONE_PORT=5090
. "$ROOT/tests/bench/out.sh"
bench_out messages
ulimit -n 65536 2>/dev/null || true
SUMMARY="$OUT/summary.txt"
PID=""
CLK_TCK=$(getconf CLK_TCK)
. "$HERE/lib.sh"

start_msg_target() {  # name dir: start_target (lib.sh) with this benchmark's sipwake config
  if [ "$1" = sipwake ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$2/bench.p8" 2>/dev/null
    cat > "$2/sipwake.conf" <<CONF
[general]
data_dir = $2
[log]
level = warn
[sip]
listen = udp:127.0.0.1:$PORT, tcp:127.0.0.1:$PORT
[auth]
enabled = no
[offline]
max_per_aor = 1000000
[push]
apns_key_file = $2/bench.p8
apns_key_id = KEY1234567
apns_team_id = TEAM123456
apns_host = 127.0.0.1
apns_port = 9
apns_sandbox_host = 127.0.0.1
apns_sandbox_port = 9
[store]
path = $2/sipwake.db
[policy]
file = $ROOT/policies/default.lua
lua_path = $ROOT/lua
CONF
  fi
  start_target "$1" "$2"
}

rows() {  # name dir user -> stored messages for user
  case $1 in
    kamailio-msilo) sqlite3 "$2/kamailio.db" "SELECT count(*) FROM silo WHERE username='$3'" ;;
    sipwake) sqlite3 "$2/sipwake.db" "SELECT count(*) FROM sipwake_messages WHERE aor='$3@example.com'" ;;
  esac
}

register_from() {  # dir user port [t1]: one REGISTER from port (the contact points there too);
                   # over TCP the connection closes after it: the phone sleeps
  printf 'SEQUENTIAL\n%s;%064x;\n' "$2" 1 > "$1/reg-$2.csv"
  (cd "$1" && sipp -sf "$HERE/reg.xml" -inf "reg-$2.csv" -t "${4:-u1}" -i 127.0.0.1 -p "$3" \
     -set contact_port "$3" -m 1 -nostdin -timeout 10s 127.0.0.1:$PORT > /dev/null 2>&1)
}

say "# sipwake offline MESSAGE benchmark $(date -Is)"
say "# $(nproc) CPUs, $(uname -r), $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1), $(kamailio -v 2>/dev/null | head -1 | cut -c1-40), $("$SIPWAKE" --version)"
say "# store ramp: $RATES, ${DUR}s per step; drain: $DRAIN messages; results in $OUT"
declare -A BEST LOST DRAINED
printf '%-16s %7s %8s %8s %6s %7s %8s %9s %5s  %s\n' target rate msgs ok failed retrans elapsed achieved cpu% verdict | tee -a "$SUMMARY"
for t in $TARGETS; do
  dir="$OUT/$t"; mkdir -p "$dir"
  start_msg_target "$t" "$dir" || continue
  # the sleeping phone: sipwake knows its push binding; msilo's user has no registration
  [ "$t" = sipwake ] && register_from "$dir" sleepy 5998 t1
  [ "$t" = sipwake ] && register_from "$dir" drainer 5997 t1
  printf 'SEQUENTIAL\nsleepy;\n' > "$dir/to.csv"
  BEST[$t]=0; total=0
  for r in $RATES; do
    msgs=$((r * DUR))
    read -r ok fail retr el ach cpu v < <(step "$dir/store_$r" "$r" "$msgs" "$dir/to.csv" "$HERE/msg_uac.xml")
    printf '%-16s %7s %8s %8s %6s %7s %8s %9s %5s  %s\n' "$t" "$r" "$msgs" "$ok" "$fail" "$retr" "$el" "$ach" "$cpu" "$v" | tee -a "$SUMMARY"
    res "step target=$t phase=ramp rate=$r offered=$msgs ok=$ok failed=$fail retrans=$retr elapsed=$el achieved=$ach cpu=$cpu verdict=$v"
    total=$((total + ${ok:-0}))
    if [ "$v" = PASS ]; then BEST[$t]=$ach; else break; fi
    sleep 1
  done
  sleep 1
  lost=$((total - $(rows "$t" "$dir" sleepy)))
  LOST[$t]=$((lost > 0 ? lost : 0)) # more rows than 202s: MESSAGEs stored after SIPp gave up on them
  # drain
  printf 'SEQUENTIAL\ndrainer;\n' > "$dir/drain.csv"
  step "$dir/drain_store" 500 "$DRAIN" "$dir/drain.csv" "$HERE/msg_uac.xml" > /dev/null
  sleep 1
  t0=$(date +%s.%N)
  register_from "$dir" drainer $PHONE_PORT
  (cd "$dir" && timeout 120 sipp -sf "$HERE/msg_uas.xml" -t u1 -i 127.0.0.1 -p $PHONE_PORT -m "$DRAIN" \
     -nostdin -timeout 110s -buff_size 4194304 > /dev/null 2>&1)
  t1=$(date +%s.%N)
  DRAINED[$t]=$(awk -v n="$DRAIN" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n/(b-a)}')
  res "messages target=$t lost=${LOST[$t]} drained_per_s=${DRAINED[$t]}"
  stop_target
done

say ""
say "## summary"
base=${BEST[kamailio-msilo]:-0}
printf '%-16s %14s %10s %8s %12s\n' target 'stored/s' 'vs msilo' lost 'drained/s' | tee -a "$SUMMARY"
for t in $TARGETS; do
  [ -n "${BEST[$t]:-}" ] || continue
  ratio=$(awk -v a="${BEST[$t]}" -v b="$base" 'BEGIN{ if (b>0) printf "%.2fx", a/b; else print "n/a"}')
  printf '%-16s %14s %10s %8s %12s\n' "$t" "${BEST[$t]}" "$ratio" "${LOST[$t]}" "${DRAINED[$t]}" | tee -a "$SUMMARY"
done
say "# stored/s: achieved rate of the highest step that passed (every MESSAGE answered 202 once stored, >= 90 % of the target, no retransmission)."
say "# lost: 202s without a stored row. drained/s: $DRAIN stored MESSAGEs to a phone that registers, from its REGISTER to the last one answered."
say "# Bar (issue 5): sipwake >= 1.0x msilo's store rate, 0 lost."
