#!/usr/bin/env bash
# register.sh — `make bench`: REGISTER throughput and memory of sipwake against Kamailio 5.6,
# in one run, on loopback, with SIPp.
#
# Three registrars, one after the other, each on 127.0.0.1:$PORT (UDP):
#   kamailio-mem     usrloc in memory only (db_mode 0)             — the bar
#   kamailio-sqlite  usrloc writing through to SQLite (db_mode 1)
#   sipwake          persisting every binding to SQLite, auth off, policies/default.lua
# For each: idle RSS; MEM_REGS distinct REGISTERs (RFC 8599 push params) at MEM_RATE/s and
# the RSS after (per binding); then a rate ramp (RATES, DUR s per step, fresh users each
# step) stopping at the first step that fails. A step PASSes when every REGISTER got its 200,
# the achieved rate is at least 90 % of the target and SIPp saw no retransmission. For
# sipwake it also times a restart with the MEM_REGS bindings stored (until "ready").
# Kamailio runs as ../shared/bench measures it: TLSF allocator, 4 GB shm, 2 UDP workers.
#
# Knobs (environment): PORT (5070), RATES ("1000 5000 10000 20000 30000 35000 40000 50000"), DUR (10),
# MEM_REGS (100000), MEM_RATE (5000, as ../shared/bench does), TARGETS ("kamailio-mem kamailio-sqlite sipwake"),
# OUT (result directory, default var/bench/<time>). Prints a summary; never fails on a timing.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tests/bench"
PORT=${PORT:-5070}
RATES=${RATES:-"1000 5000 10000 20000 30000 35000 40000 50000"}
DUR=${DUR:-10}
MEM_REGS=${MEM_REGS:-100000}
MEM_RATE=${MEM_RATE:-5000}
TARGETS=${TARGETS:-"kamailio-mem kamailio-sqlite sipwake"}
OUT=${OUT:-$ROOT/var/bench/$(date +%Y%m%d-%H%M%S)}
SIPWAKE=${SIPWAKE:-$ROOT/server/sipwake}
LPORT=5061
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || true
SUMMARY="$OUT/summary.txt"
PID=""
CLK_TCK=$(getconf CLK_TCK)

say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

users() {  # prefix count > csv   (user;token)
  perl -e 'my ($p, $n) = @ARGV; print "SEQUENTIAL\n";
    for my $i (0 .. $n - 1) {
      my $x = ($i * 2654435761 + 12345) % 4294967296;
      printf "%s%07d;%08x%08x%08x%08x%08x%08x%08x%08x;\n", $p, $i, $i, $x, $x ^ 0xdeadbeef,
        ($i * 40503) % 4294967296, $x >> 3, $i ^ 0x5a5a5a5a, ($x * 3) % 4294967296, 0xc0ffee00 + $i % 256;
    }' "$1" "$2"
}

# Memory of a registrar's process tree: the sum of PSS (proportional set size) over its
# processes, so Kamailio's shared memory is counted once; for sipwake (one process) it is its RSS.
pss_kb() { local t=0 p v; for p in $(pgrep -P "$1") "$1"; do v=$(awk '/^Pss:/ {print $2; exit}' /proc/$p/smaps_rollup 2>/dev/null); t=$((t + ${v:-0})); done; echo $t; }
ticks() { local t=0 p; for p in $(pgrep -P "$1") "$1"; do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }

wait_udp() { for _ in $(seq 1 100); do ss -lnu | awk '{print $4}' | grep -q ":$PORT\$" && return 0; sleep 0.1; done; return 1; }

stop_target() {
  [ -n "$PID" ] || return 0
  kill -TERM "$PID" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null
  wait "$PID" 2>/dev/null
  PID=""
}
trap stop_target EXIT

start_target() {  # name dir
  local name=$1 dir=$2
  case $name in
    kamailio-mem)
      kamailio -f "$HERE/kamailio.cfg" -DD -E -m 4096 -M 16 -x tlsf -X tlsf \
        -A "LISTEN=udp:127.0.0.1:$PORT" > "$dir/proxy.log" 2>&1 & PID=$! ;;
    kamailio-sqlite)
      rm -f "$dir/kamailio.db"
      sqlite3 "$dir/kamailio.db" < /usr/share/kamailio/db_sqlite/standard-create.sql
      sqlite3 "$dir/kamailio.db" < /usr/share/kamailio/db_sqlite/usrloc-create.sql
      kamailio -f "$HERE/kamailio.cfg" -DD -E -m 4096 -M 16 -x tlsf -X tlsf -A WITH_DB \
        -A "DBURL=\"sqlite://$dir/kamailio.db\"" -A "LISTEN=udp:127.0.0.1:$PORT" \
        > "$dir/proxy.log" 2>&1 & PID=$! ;;
    sipwake)
      [ -f "$dir/sipwake.conf" ] || cat > "$dir/sipwake.conf" <<CONF
[general]
data_dir = $dir
[log]
level = warn
[sip]
listen = udp:127.0.0.1:$PORT
[auth]
enabled = no
[registrar]
max_expires = 7200
[store]
path = $dir/sipwake.db
[policy]
file = $ROOT/policies/default.lua
lua_path = $ROOT/lua
CONF
      "$SIPWAKE" --config "$dir/sipwake.conf" > "$dir/proxy.log" 2>&1 & PID=$! ;;
  esac
  wait_udp || { log "$name did not open udp $PORT"; tail "$dir/proxy.log" >&2; return 1; }
  sleep 0.5
}

stat_col() { awk -F';' -v n="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==n) c=i; next} {l=$0} END{split(l,f,";"); print (c ? f[c] : "NA")}' "$1"; }

# step DIR RATE CALLS CSV -> prints "ok failed retrans elapsed achieved cpu verdict"
step() {
  local d=$1 rate=$2 calls=$3 csv=$4
  mkdir -p "$d"
  local t0 t1; t0=$(ticks "$PID")
  (cd "$d" && timeout $((calls / rate * 4 + 60)) sipp -sf "$HERE/reg.xml" -inf "$csv" -t u1 \
     -i 127.0.0.1 -p $LPORT 127.0.0.1:$PORT -r "$rate" -m "$calls" -l $((rate * 5 + 100)) \
     -recv_timeout 5000 -timeout $((calls / rate * 4 + 30))s -nostdin -buff_size 4194304 \
     -max_recv_loops 10000 -max_sched_loops 10000 -trace_stat -stf stat.csv -fd 1 \
     -trace_err -error_file errors.log -max_log_size 2000000 > /dev/null 2> sipp.stderr)
  t1=$(ticks "$PID")
  local f="$d/stat.csv"
  [ -s "$f" ] || { echo "0 $calls NA NA NA NA NO-STATS"; return; }
  local ok fail retr start cur el ach cpu v
  ok=$(stat_col "$f" 'SuccessfulCall(C)'); fail=$(stat_col "$f" 'FailedCall(C)')
  retr=$(stat_col "$f" 'Retransmissions(C)')
  start=$(stat_col "$f" StartTime | awk -F'\t' '{print $3}'); cur=$(stat_col "$f" CurrentTime | awk -F'\t' '{print $3}')
  el=$(awk -v a="$start" -v b="$cur" 'BEGIN{printf "%.2f", b-a}')
  ach=$(awk -v n="$ok" -v e="$el" 'BEGIN{if (e>0) printf "%.0f", n/e; else print 0}')
  cpu=$(awk -v a="$t0" -v b="$t1" -v e="$el" -v hz="$CLK_TCK" 'BEGIN{if (e>0) printf "%.0f", 100*(b-a)/hz/e; else print "NA"}')
  v=PASS
  if [ "$fail" != 0 ] || [ "$ok" != "$calls" ]; then v=FAIL
  elif [ "$ach" -lt $((rate * 90 / 100)) ]; then v=SLOW
  elif [ "$retr" != 0 ]; then v=RETRANS; fi
  echo "$ok $fail $retr $el $ach $cpu $v"
}

declare -A BEST BEST_FAILS RSS_PER IDLE_RSS LOADED_RSS MEM_FAILS RESTART TOP
say "# sipwake REGISTER benchmark $(date -Is)"
say "# $(nproc) CPUs, $(uname -r), $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -1), $(kamailio -v 2>/dev/null | head -1 | cut -c1-40), $("$SIPWAKE" --version)"
say "# rates: $RATES, ${DUR}s per step; memory phase: $MEM_REGS users at $MEM_RATE/s; results in $OUT"
for t in $TARGETS; do
  dir="$OUT/$t"; mkdir -p "$dir"
  log "== $t"
  start_target "$t" "$dir" || continue
  IDLE_RSS[$t]=$(pss_kb "$PID")
  users m "$MEM_REGS" > "$dir/mem.csv"
  read -r ok fail retr el ach cpu v < <(step "$dir/mem" "$MEM_RATE" "$MEM_REGS" "$dir/mem.csv")
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
    RESTART[$t]="${RESTART[$t]} s ($n bindings)"
    wait_udp
  fi
  rm -f "$dir/mem.csv"
  BEST[$t]=0; BEST_FAILS[$t]=0
  printf '%-16s %7s %8s %8s %6s %7s %8s %9s %5s  %s\n' target rate calls ok failed retrans elapsed achieved cpu% verdict | tee -a "$SUMMARY"
  for r in $RATES; do
    calls=$((r * DUR))
    users "r${r}x" "$calls" > "$dir/step.csv"
    read -r ok fail retr el ach cpu v < <(step "$dir/reg_$r" "$r" "$calls" "$dir/step.csv")
    printf '%-16s %7s %8s %8s %6s %7s %8s %9s %5s  %s\n' "$t" "$r" "$calls" "$ok" "$fail" "$retr" "$el" "$ach" "$cpu" "$v" | tee -a "$SUMMARY"
    rm -f "$dir/step.csv"
    [ "${ach:-0}" -gt "${TOP[$t]:-0}" ] 2>/dev/null && TOP[$t]=$ach
    if [ "$v" = PASS ]; then BEST[$t]=$ach; BEST_FAILS[$t]=$fail; else break; fi
    sleep 2
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
say "# REGISTER/s: achieved rate of the highest ramp step that passed (every REGISTER answered 200, >= 90 % of the target rate, no retransmission); 0 if none did."
say "# max achieved: the highest achieved rate of any step, passed or not."
say "# mem/binding: (memory after $MEM_REGS registrations and the settle time - idle memory) / $MEM_REGS; memory is the PSS summed over the registrar's processes (RSS for sipwake's single process)."
say "# Bars (issue 2): sipwake >= 1.0x kamailio-mem with 0 failures; <= 1024 B per binding; restart ready < 2 s."
