# lib.sh — helpers shared by the benchmark scripts (sourced). Expects ROOT, HERE, PORT, LPORT,
# SIPWAKE, SUMMARY, CLK_TCK and PID (the target's process id, "" when none runs).

# GEN_NICE (0): the nice value SIPp (the load generator) runs at; see calls.sh
GEN_NICE=${GEN_NICE:-0}
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

# The capture of a step on the wire (calls.sh, register.sh): the target's UDP port on lo, ns
# timestamps (the adapter's own clock when lo offers one), WIRE_SNAP bytes of each packet.
CAP=""
CAP_DIR=""
# tcpdump writes out its capture on SIGINT; before it started (still in WIRE_DELAY's sleep, an
# asynchronous subshell that ignores SIGINT) the subshell is terminated instead
stop_cap() {
  [ -n "$CAP" ] || return 0
  if [ -e "$CAP_DIR/cap.started" ]; then kill -INT "$CAP" 2> /dev/null; else kill -TERM "$CAP" 2> /dev/null; fi
  # (a SIGINT that came between the exec and tcpdump's handler was ignored: TERM it then)
  for _ in $(seq 1 50); do kill -0 "$CAP" 2> /dev/null || break; sleep 0.1; done
  kill -TERM "$CAP" 2> /dev/null
  wait "$CAP" 2> /dev/null
  CAP=""
}
# The MongoDB emulator of the sipwake-mongo target (tests/emulators/mongo.py): started with
# the target, kept across its restarts (it holds the data in memory), stopped with the next
# target or at exit.
MONGO_EMU=""
stop_mongo() {
  [ -n "$MONGO_EMU" ] || return 0
  kill -TERM "$MONGO_EMU" 2>/dev/null
  wait "$MONGO_EMU" 2>/dev/null
  MONGO_EMU=""
}
trap 'stop_cap; stop_target; stop_mongo' EXIT

TSTYPE=()
command -v tcpdump > /dev/null && tcpdump -i lo -J 2> /dev/null | grep -q adapter_unsynced && TSTYPE=(-j adapter_unsynced)
# wire_start DIR PACKETS: capture PACKETS packets (-c) from WIRE_DELAY s into the step (a
# window in the middle of the step, not its start-up) into DIR/lo.pcap; sets CAP ("" when
# PACKETS is 0 or tcpdump is missing)
wire_start() {
  CAP=""
  [ "$2" -gt 0 ] 2> /dev/null && command -v tcpdump > /dev/null || return 0
  rm -f "$1/cap.started"
  (sleep "$WIRE_DELAY"; : > "$1/cap.started"
   exec tcpdump -i lo -n "${TSTYPE[@]}" --time-stamp-precision=nano -B 32768 -s "$WIRE_SNAP" \
    -c "$2" -w "$1/lo.pcap" "udp port $PORT" 2> "$1/tcpdump.err") &
  CAP=$!
  CAP_DIR=$1
}
# wire_read DIR ANALYSER ARGS...: stops the capture, prints the analyser's line (tcpdump's
# text of DIR/lo.pcap on its input) with the kernel's capture drops appended, or nothing
# when there was no capture; removes the pcap unless KEEP_PCAP
wire_read() {
  local d=$1 w
  shift
  [ -n "$CAP" ] || return 0
  stop_cap
  if ! grep -q listening "$d/tcpdump.err" 2> /dev/null; then
    log "no capture in $d (step shorter than WIRE_DELAY=$WIRE_DELAY s, or tcpdump cannot capture on lo: $d/tcpdump.err)"
    return 0
  fi
  w=$(tcpdump -r "$d/lo.pcap" -n -tt --time-stamp-precision=nano -A 2> /dev/null | perl "$@")
  [ -n "${KEEP_PCAP:-}" ] || rm -f "$d/lo.pcap"
  [ -n "$w" ] || { log "$1 read nothing from $d/lo.pcap"; return 0; }
  echo "$w $(awk '/dropped by kernel/ {print $1; exit}' "$d/tcpdump.err")"
}

# start_apns DIR [apns.py args...]: a certificate for 127.0.0.1 (DIR/cert.pem, key.pem) and an
# APNs token key (DIR/apns.p8, key id KEY1234567, team TEAM123456), then the APNs emulator
# (tests/emulators/apns.py) with them on a free port; sets EMU (its pid) and EMU_PORT (empty
# when it did not start).
start_apns() {
  local d=$1
  shift
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$d/key.pem" -out "$d/cert.pem" 2>/dev/null
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/apns.p8"
  openssl pkey -in "$d/apns.p8" -pubout -out "$d/apns-pub.pem"
  /usr/bin/python3 "$ROOT/tests/emulators/apns.py" --cert "$d/cert.pem" --key "$d/key.pem" \
    --auth-key "KEY1234567:TEAM123456:$d/apns-pub.pem" "$@" > "$d/emulator.out" 2>&1 &
  EMU=$!
  for _ in $(seq 1 50); do grep -q listening "$d/emulator.out" && break; sleep 0.1; done
  EMU_PORT=$(awk '/listening/ {print $2}' "$d/emulator.out")
}

stat_col() { awk -F';' -v n="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==n) c=i; next} {l=$0} END{split(l,f,";"); print (c ? f[c] : "NA")}' "$1"; }

start_target() {  # name dir
  local name=$1 dir=$2 store="path = $2/sipwake.db"
  if [ "$name" = sipwake-mongo ] && [ ! -f "$dir/sipwake.conf" ]; then
    # sipwake on the MongoDB backend, against the emulator the tests use: what this measures
    # is bounded by the emulator (Python, one lock), not a MongoDB server's figure
    stop_mongo
    /usr/bin/python3 "$ROOT/tests/emulators/mongo.py" --port 0 > "$dir/mongo.out" 2>&1 &
    MONGO_EMU=$!
    for _ in $(seq 1 50); do grep -q listening "$dir/mongo.out" && break; sleep 0.1; done
    store="backend = mongodb
uri = mongodb://127.0.0.1:$(awk '/listening/ {print $2}' "$dir/mongo.out")/bench"
  fi
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
    kamailio-msilo)
      rm -f "$dir/kamailio.db"
      sqlite3 "$dir/kamailio.db" < /usr/share/kamailio/db_sqlite/standard-create.sql
      sqlite3 "$dir/kamailio.db" < /usr/share/kamailio/db_sqlite/msilo-create.sql
      kamailio -f "$HERE/kamailio-msilo.cfg" -DD -E -m 1024 -M 16 \
        -A "DBURL=\"sqlite://$dir/kamailio.db\"" -A "OUTBOUND=\"sip:127.0.0.1:$PORT\"" \
        -A "LISTEN=udp:127.0.0.1:$PORT" > "$dir/proxy.log" 2>&1 & PID=$! ;;
    sipwake | sipwake-mongo)
      # An APNs key, so the push bindings reg.xml registers are accepted (with no credential
      # at all sipwake answers them 555, RFC 8599 §5.6.1.1); its host is a closed loopback
      # port: a push fails at once and never leaves the machine.
      [ -f "$dir/bench.p8" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$dir/bench.p8" 2>/dev/null
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
[push]
apns_key_file = $dir/bench.p8
apns_key_id = KEY1234567
apns_team_id = TEAM123456
apns_host = 127.0.0.1
apns_port = 9
apns_sandbox_host = 127.0.0.1
apns_sandbox_port = 9
[store]
$store
[policy]
file = $ROOT/policies/default.lua
lua_path = $ROOT/lua
CONF
      "$SIPWAKE" --config "$dir/sipwake.conf" > "$dir/proxy.log" 2>&1 & PID=$! ;;
  esac
  wait_udp || { log "$name did not open udp $PORT"; tail "$dir/proxy.log" >&2; return 1; }
  sleep 0.5
}


# step DIR RATE CALLS CSV SCENARIO [sipp args...] -> prints "ok failed retrans elapsed achieved
# cpu verdict": one SIPp run of CALLS calls of SCENARIO at RATE/s from the CSV's users.
# A scenario that counts a refusal (503) in GenericCounter1 (uac_call.xml) has those calls
# among SuccessfulCall: ok is SuccessfulCall - refused, achieved is ok / elapsed, the verdict
# is REFUSED when any was refused, and the refused count is written to DIR/refused (0 when
# the scenario counts none).
step() {
  local d=$1 rate=$2 calls=$3 csv=$4 sf=$5
  shift 5
  mkdir -p "$d"
  local t0 t1; t0=$(ticks "$PID")
  (cd "$d" && timeout $((calls / rate * 4 + 60)) nice -n "$GEN_NICE" sipp -sf "$sf" -inf "$csv" -t u1 "$@" \
     -i 127.0.0.1 -p $LPORT 127.0.0.1:$PORT -r "$rate" -m "$calls" -l $((rate * 5 + 100)) \
     -recv_timeout 5000 -timeout $((calls / rate * 4 + 30))s -nostdin -buff_size 4194304 \
     -max_recv_loops 10000 -max_sched_loops 10000 -trace_stat -stf stat.csv -fd 1 \
     -trace_err -error_file errors.log -max_log_size 2000000 > /dev/null 2> sipp.stderr)
  t1=$(ticks "$PID")
  local f="$d/stat.csv"
  [ -s "$f" ] || { echo "0 $calls NA NA NA NA NO-STATS"; return; }
  local ok fail retr start cur el ach cpu v
  local refused
  ok=$(stat_col "$f" 'SuccessfulCall(C)'); fail=$(stat_col "$f" 'FailedCall(C)')
  retr=$(stat_col "$f" 'Retransmissions(C)'); refused=$(stat_col "$f" 'GenericCounter1(C)')
  case $refused in '' | *[!0-9]*) refused=0 ;; esac
  ok=$((ok - refused))
  echo "$refused" > "$d/refused"
  # the offering window: from the start to the moment the last call was placed, interpolated
  # between SIPp's periodic rows (-fd 1) before and after it; DIR/window gets "calls completed
  # (not refused) by then, its seconds", nothing when SIPp never placed them all
  awk -F';' -v n="$calls" 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    { split($h["StartTime"], a, "\t"); split($h["CurrentTime"], b, "\t")
      t = b[3] - a[3]; out = $h["OutgoingCall(C)"]
      ok = $h["SuccessfulCall(C)"] - (("GenericCounter1(C)" in h) ? $h["GenericCounter1(C)"] : 0) }
    out >= n { f = (seen && out > pout) ? (n - pout) / (out - pout) : 1
      printf "%d %.2f\n", pok + f * (ok - pok), pt + f * (t - pt); exit }
    { seen = 1; pt = t; pout = out; pok = ok }' "$f" > "$d/window"
  start=$(stat_col "$f" StartTime | awk -F'\t' '{print $3}'); cur=$(stat_col "$f" CurrentTime | awk -F'\t' '{print $3}')
  el=$(awk -v a="$start" -v b="$cur" 'BEGIN{printf "%.2f", b-a}')
  ach=$(awk -v n="$ok" -v e="$el" 'BEGIN{if (e>0) printf "%.0f", n/e; else print 0}')
  cpu=$(awk -v a="$t0" -v b="$t1" -v e="$el" -v hz="$CLK_TCK" 'BEGIN{if (e>0) printf "%.0f", 100*(b-a)/hz/e; else print "NA"}')
  v=PASS
  if [ "$refused" != 0 ]; then v=REFUSED
  elif [ "$fail" != 0 ] || [ "$ok" != "$calls" ]; then v=FAIL
  elif [ "$ach" -lt $((rate * 90 / 100)) ]; then v=SLOW
  elif [ "$retr" != 0 ]; then v=RETRANS; fi
  echo "$ok $fail $retr $el $ach $cpu $v"
}


# udp_drops PORT: datagrams the kernel dropped, since the socket opened, at the UDP sockets
# bound to PORT on IPv4 (/proc/net/udp's drops: receive queue full), summed
udp_drops() {
  awk -v p="$(printf '%04X' "$1")" 'NR > 1 { split($2, a, ":"); if (a[2] == p) n += $NF } END { print n + 0 }' /proc/net/udp
}

# res KIND key=value...: one line of the run's machine-readable results ($OUT/results.tsv),
# which tests/bench/report.pl reads (values without spaces).
res() { printf '%s\n' "$*" >> "$OUT/results.tsv"; }

# settle: after a failed step, wait (at most SETTLE_MAX s, 40) until the target has had a
# second under 5 % of a core — its retransmissions and timers of the failed step done — so
# the next step starts from a quiet target; prints the seconds waited.
settle() {
  local i a b
  for i in $(seq 1 "${SETTLE_MAX:-40}"); do
    a=$(ticks "$PID"); sleep 1; b=$(ticks "$PID")
    [ $(((b - a) * 20)) -le "$CLK_TCK" ] && { echo "$i"; return 0; }
  done
  echo "${SETTLE_MAX:-40}"
}

# next_rate PASS FAIL GRAIN: the rate half way between the last passing and the first failing
# step, down to a multiple of GRAIN; empty when that is not above PASS (resolution reached).
next_rate() { local m=$((($1 + $2) / 2 / $3 * $3)); [ "$m" -gt "$1" ] && [ "$m" -lt "$2" ] && echo "$m"; }
