#!/usr/bin/env bash
# soak.sh — `make soak`: a mixed soak of the release build, SIGKILLed at random points, on
# loopback; prints memory, descriptor and store-queue figures and what each kill lost.
#
# Load, for SOAK_SECONDS (600), at moderate rates (two shared cores: the load must not be the
# bottleneck):
#   registrations: SIPp (tests/bench/soak_reg.xml), REG_RATE (20) new phones a second, each
#     registering with Expires REG_EXPIRES (20), refreshing every REFRESH (10) s three times,
#     then removing its binding: about 5 x REG_RATE REGISTERs a second;
#   calls to push phones: SIPp (tests/bench/uac_call.xml) calls CALL_RATE (2) a second to
#     CALL_PHONES (100) push phones; tests/bench/soak_phones.pl wakes the phone when the APNs
#     emulator (tests/emulators/apns.py) logs its push: it registers again from a new port and
#     answers the parked INVITE, then the BYE;
#   offline MESSAGEs: soak_phones.pl sends MSG_RATE (5) a second to MSG_PHONES (100) push
#     phones that sleep (sipwake stores each, answers 202 and pushes); a phone wakes WAKE_DELAY
#     (10) s after its push and takes what was stored; at the end every phone wakes once more.
# Each second: the server's RSS (/proc/PID/status VmRSS), open descriptors (/proc/PID/fd),
# store queue depth (sipwake_store_queue_depth on the admin's /metrics), bindings, stored
# messages and parked requests, into OUT/samples.csv. Flat: the mean of the last window (the
# last SOAK_SECONDS/10 s) is at most 10 % above the mean of the window after warm-up (from
# SOAK_SECONDS/10 s after the last start on, as long) plus a slack (RSS 2048 kB, descriptors 4,
# queue 16); both windows are in the last process, since a restart starts RSS afresh.
# KILLS (5) times, at seeded random points (SEED, printed) between 2/10 and 6/10 of the soak,
# the server is killed with SIGKILL while the load runs; before it is started again on the
# same database, tests/bench/soak_lost.pl counts the acknowledged bindings (REGISTERs answered
# 200, not expired or removed since) missing from the location table, and the MESSAGEs
# answered 202 neither delivered nor stored. Prints "lost: N bindings, M messages" per kill
# and in total (the bar: 0).
#
# Knobs: SOAK_SECONDS, KILLS, SEED, REG_RATE, REG_EXPIRES, REFRESH, CALL_RATE, CALL_PHONES,
# MSG_RATE, MSG_PHONES, WAKE_DELAY, PORT (a free one), ADMIN_PORT (PORT + 1), OUT (default
# var/bench/<time>-soak). Never fails on a figure; exits non-zero only when the harness breaks.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tests/bench"
# free ports by default (Sipwake::free_port: UDP and TCP free at P and P+1): the machine is
# shared, and another benchmark on 5070 would answer part of this one's load
free_port() { perl -I"$ROOT/tests/lib" -MSipwake -e 'print Sipwake::free_port()'; }
PORT=${PORT:-$(free_port)}
ADMIN_PORT=${ADMIN_PORT:-$((PORT + 1))}
REG_PORT=$(free_port)
CALL_PORT=$(free_port)
SOAK_SECONDS=${SOAK_SECONDS:-600}
KILLS=${KILLS:-5}
SEED=${SEED:-$(date +%s)}
REG_RATE=${REG_RATE:-20}
REG_EXPIRES=${REG_EXPIRES:-20}
REFRESH=${REFRESH:-10}
CALL_RATE=${CALL_RATE:-2}
CALL_PHONES=${CALL_PHONES:-100}
MSG_RATE=${MSG_RATE:-5}
MSG_PHONES=${MSG_PHONES:-100}
WAKE_DELAY=${WAKE_DELAY:-10}
SIPWAKE=${SIPWAKE:-$ROOT/server/sipwake}
. "$ROOT/tests/bench/out.sh"
bench_out soak
SUMMARY="$OUT/summary.txt"
PID="" EMU="" PHONES="" REG="" CALLS=""
CLK_TCK=$(getconf CLK_TCK)
. "$HERE/lib.sh"
ulimit -n 65536 2>/dev/null || true

cleanup() {
  for p in $REG $CALLS $PHONES; do kill "$p" 2>/dev/null; done
  stop_target
  [ -n "$EMU" ] && kill "$EMU" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT
die() { log "soak: $*"; exit 2; }
# the server on udp PORT is ours alone (a second process bound there would take part of the load)
own_port() {
  local others
  others=$(ss -Hlunp "sport = :$PORT" 2>/dev/null | grep -v "pid=$PID," | head -1)
  [ -z "$others" ] || die "another process listens on udp $PORT: $others"
}

# ---- the APNs emulator and sipwake
start_apns "$OUT" --log "$OUT/apns.log" --lifetime $((SOAK_SECONDS + 600))
[ -n "$EMU_PORT" ] || die "the APNs emulator did not start: $(cat "$OUT/emulator.out")"
cat > "$OUT/sipwake.conf" <<CONF
[general]
data_dir = $OUT
[log]
level = warn
[sip]
listen = udp:127.0.0.1:$PORT
[auth]
enabled = no
[registrar]
min_expires = 5
[offline]
max_per_aor = 100000
[push]
apns_key_file = $OUT/apns.p8
apns_key_id = KEY1234567
apns_team_id = TEAM123456
apns_host = 127.0.0.1
apns_port = $EMU_PORT
ca = $OUT/cert.pem
[admin]
enabled = yes
listen = 127.0.0.1:$ADMIN_PORT
root = $ROOT/webadmin
[store]
path = $OUT/sipwake.db
[policy]
file = $ROOT/policies/default.lua
lua_path = $ROOT/lua
CONF
TOKEN=$("$SIPWAKE" --config "$OUT/sipwake.conf" admin token add soak 2>&1 | grep -o '^swk_[A-Za-z0-9_-]*')
[ -n "$TOKEN" ] || die "no admin token"
start_target sipwake "$OUT" || die "sipwake did not start"
own_port

say "# sipwake soak $(date -Is)"
say "# $(nproc) CPUs, $(uname -r), $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1), $("$SIPWAKE" --version)"
say "# ${SOAK_SECONDS}s; registrations $REG_RATE/s (Expires $REG_EXPIRES, refresh every ${REFRESH}s x3, then removed);" \
  "calls $CALL_RATE/s to $CALL_PHONES push phones; MESSAGEs $MSG_RATE/s to $MSG_PHONES sleeping push phones (wake ${WAKE_DELAY}s after the push)"
say "# $KILLS SIGKILLs, seed $SEED; sipwake on udp 127.0.0.1:$PORT; results in $OUT"

# ---- the phones, then the SIPp load
(exec perl "$HERE/soak_phones.pl" --port "$PORT" --emu-log "$OUT/apns.log" --call-phones "$CALL_PHONES" \
   --msg-phones "$MSG_PHONES" --msg-rate "$MSG_RATE" --wake-delay "$WAKE_DELAY" --duration "$SOAK_SECONDS" \
   --seed "$SEED" --out "$OUT/phones.log" --users-csv "$OUT/callees.csv" > "$OUT/phones.out" 2> "$OUT/phones.err") &
PHONES=$!
for _ in $(seq 1 600); do grep -q 'phones ready' "$OUT/phones.out" && break; kill -0 $PHONES 2>/dev/null || break; sleep 0.1; done
grep -q 'phones ready' "$OUT/phones.out" || die "the phones did not register: $(tail -3 "$OUT/phones.err")"

users r $((REG_RATE * SOAK_SECONDS + REG_RATE)) > "$OUT/regusers.csv"
(cd "$OUT" && exec sipp -sf "$HERE/soak_reg.xml" -inf regusers.csv -t u1 -i 127.0.0.1 -p "$REG_PORT" \
   -r "$REG_RATE" -m $((REG_RATE * SOAK_SECONDS)) -l $((REG_RATE * (REFRESH * 4 + REG_EXPIRES) + 100)) \
   -d $((REFRESH * 1000)) -set expires "$REG_EXPIRES" -nostdin -buff_size 4194304 \
   -timeout $((SOAK_SECONDS + 4 * REFRESH + 60))s -trace_logs -log_file reg.log -trace_stat -stf reg_stat.csv -fd 1 \
   -trace_err -error_file reg_errors.log -max_log_size 20000000 127.0.0.1:$PORT > /dev/null 2> reg.stderr) &
REG=$!
(cd "$OUT" && exec sipp -sf "$HERE/uac_call.xml" -inf callees.csv -t u1 -i 127.0.0.1 -p "$CALL_PORT" \
   -r "$CALL_RATE" -m $((CALL_RATE * SOAK_SECONDS)) -default_behaviors all,-abortunexp -recv_timeout 20000 \
   -nostdin -timeout $((SOAK_SECONDS + 60))s -trace_stat -stf calls_stat.csv -fd 1 \
   -trace_err -error_file calls_errors.log -max_log_size 20000000 127.0.0.1:$PORT > /dev/null 2> calls.stderr) &
CALLS=$!

# ---- the kills: seeded, between 2/10 and 6/10 of the soak, so that the last process runs for
# at least the last 4/10 (the flatness figures are taken in it)
read -r -a KILL_AT < <(awk -v n="$KILLS" -v s="$SEED" -v lo=$((SOAK_SECONDS * 2 / 10)) -v hi=$((SOAK_SECONDS * 6 / 10)) \
  'BEGIN { srand(s); for (i = 0; i < n; i++) printf "%.1f\n", lo + rand() * (hi - lo) }' | sort -n | tr '\n' ' ')
say "# kills at +${KILL_AT[*]:-none} s"

metrics() {  # the gauges the samples want from /metrics, "NA" each when unreachable
  curl -s -m 1 -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null |
    awk '$1 == "sipwake_store_queue_depth" {q = $2} $1 == "sipwake_usrloc_location_contacts" {c = $2}
         $1 == "sipwake_offline_pending_messages" {m = $2} $1 == "sipwake_bucket_depth" {b = $2}
         END { print (q == "" ? "NA" : q), (c == "" ? "NA" : c), (m == "" ? "NA" : m), (b == "" ? "NA" : b) }'
}

LOST_B=0 LOST_M=0 K=0 RESTARTED=0
kill_now() {  # elapsed
  K=$((K + 1))
  kill -KILL "$PID"
  wait "$PID" 2>/dev/null
  PID=""
  local at
  at=$(date +%s.%N)
  RESTARTED=$(awk -v a="$T0" -v b="$at" 'BEGIN{printf "%.1f", b-a}')
  # answers sent before the process died reach their clients and their logs
  sleep 1
  local r
  r=$(perl "$HERE/soak_lost.pl" "$OUT/sipwake.db" "$at" "$OUT/phones.log" "$OUT/reg.log") || die "soak_lost.pl failed"
  read -r _ nb _ lb _ miss _ stale _ back _ nm _ lm <<< "$r"
  LOST_B=$((LOST_B + lb)) LOST_M=$((LOST_M + lm))
  mv "$OUT/proxy.log" "$OUT/proxy-$K.log"
  local t0 t1
  t0=$(date +%s.%N)
  start_target sipwake "$OUT" || die "sipwake did not start again after kill $K"
  own_port
  t1=$(date +%s.%N)
  say "$(printf 'kill %d at +%ss: lost: %d bindings, %d messages (of %d acknowledged bindings: %d missing, %d stale; %d removed but back; of %d acknowledged messages); up again in %.1fs' \
    "$K" "$1" "$lb" "$lm" "$nb" "$miss" "$stale" "$back" "$nm" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')")"
}

# ---- sample each second
echo "t,pid,rss_kb,fds,store_queue,contacts,offline_pending,bucket_depth" > "$OUT/samples.csv"
T0=$(date +%s.%N)
ki=0
while :; do
  now=$(date +%s.%N)
  el=$(awk -v a="$T0" -v b="$now" 'BEGIN{printf "%.1f", b-a}')
  awk -v e="$el" -v s="$SOAK_SECONDS" 'BEGIN{exit !(e >= s)}' && break
  if [ "$ki" -lt "${#KILL_AT[@]}" ] && awk -v e="$el" -v k="${KILL_AT[$ki]}" 'BEGIN{exit !(e >= k)}'; then
    kill_now "$el"
    ki=$((ki + 1))
    continue
  fi
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status" 2>/dev/null)
  fds=$(ls "/proc/$PID/fd" 2>/dev/null | wc -l)
  read -r q c m b < <(metrics)
  echo "$el,$PID,${rss:-NA},$fds,$q,$c,$m,$b" >> "$OUT/samples.csv"
  # until the next whole second of the soak, or the next kill if it comes first (a kill falls
  # anywhere in a second, not just after a sample)
  sleep "$(awk -v a="$T0" -v e="$el" -v k="${KILL_AT[$ki]:-1e9}" -v now="$(date +%s.%N)" \
    'BEGIN{t = int(e) + 1; if (k < t) t = k; d = a + t - now; printf "%.3f", (d > 0 ? d : 0)}')"
done

# ---- the load stops; the message phones take what is left
kill "$REG" "$CALLS" 2>/dev/null
wait "$REG" "$CALLS" 2>/dev/null
REG="" CALLS=""
for _ in $(seq 1 900); do kill -0 "$PHONES" 2>/dev/null || break; sleep 0.1; done
wait "$PHONES" 2>/dev/null
PHONES=""
left=$(sqlite3 "$OUT/sipwake.db" 'SELECT count(*) FROM sipwake_messages')

say ""
say "## lost on SIGKILL"
say "total: lost: $LOST_B bindings, $LOST_M messages over $K kills (bar: 0)"
say ""
say "## resources (flat: the last window's mean <= 1.10 x the window after warm-up + slack)"
W=$((SOAK_SECONDS / 10))
# the windows are both in the last process (started at +$RESTARTED s; 0 without kills): RSS
# and descriptors start afresh with each restart
awk -F, -v w="$W" -v s="$SOAK_SECONDS" -v r="$RESTARTED" '
  NR == 1 { next }
  { n++; for (i = 3; i <= 5; i++) if ($i != "NA") { v = $i + 0; if (!(i in first)) { first[i] = v; max[i] = v } last[i] = v; if (v > max[i]) max[i] = v
      if ($1 >= r + w && $1 < r + 2 * w) { rs[i] += v; rn[i]++ } if ($1 >= s - w) { es[i] += v; en[i]++ } } }
  END {
    split("RSS kB,descriptors,store queue", name, ","); split("2048,4,16", slack, ",")
    printf "%-12s %9s %9s %9s %12s %12s  %s\n", "", "start", "end", "max", "warm mean", "last mean", "verdict"
    for (i = 3; i <= 5; i++) {
      rm = rn[i] ? rs[i] / rn[i] : -1; em = en[i] ? es[i] / en[i] : -1
      v = (rm < 0 || em < 0) ? "n/a" : (em <= rm * 1.10 + slack[i - 2] ? "FLAT" : "GROWING")
      printf "%-12s %9s %9s %9s %12.1f %12.1f  %s (slack %s)\n", name[i - 2], first[i], last[i], max[i], rm, em, v, slack[i - 2]
    }
    printf "# %d samples; the last process from +%s s: warm window [%.0f, %.0f) s, last window [%d, %d) s\n", n, r, r + w, r + 2 * w, s - w, s
  }' "$OUT/samples.csv" | tee -a "$SUMMARY"

say ""
say "## load"
say "registrations (SIPp): $(stat_col "$OUT/reg_stat.csv" 'SuccessfulCall(C)') phones completed, $(stat_col "$OUT/reg_stat.csv" 'FailedCall(C)') failed, $(grep -c ' ack ' "$OUT/reg.log") REGISTERs answered 200"
say "calls to push phones (SIPp): $(stat_col "$OUT/calls_stat.csv" 'SuccessfulCall(C)') completed, $(stat_col "$OUT/calls_stat.csv" 'FailedCall(C)') failed"
say "phones: $(tail -1 "$OUT/phones.out")"
say "stored messages left after the final wake: $left"
say "# failed calls and registrations are expected around the kills (parked INVITEs die with the process)."
exit 0
