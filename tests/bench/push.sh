#!/usr/bin/env bash
# push.sh — `make bench` (third part): push throughput over the HTTP/2 pool against h2load.
#
# One APNs emulator (tests/emulators/apns.py, token auth, MAX_CONCURRENT_STREAMS $STREAMS per
# connection, no log) on 127.0.0.1. Against it, in turns, ROUNDS times each:
#   h2load (Debian nghttp2-client): $COUNT POSTs of the same VoIP push — the same path,
#     apns-* headers, provider token and JSON payload sipwake sends — over $CONNECTIONS
#     connections with up to $STREAMS streams each (-c, -m);
#   sipwake (tests/bench/push_bench.c on the release objects): $COUNT pushes to 64 push
#     bindings through the dispatcher (push.c: pn params, payload, accounting) and the pool
#     (push/h2_pool.c) with [push] connections = $CONNECTIONS, the server allowing $STREAMS
#     streams each.
# Reports each round and the median request rate of each, and sipwake / h2load against the
# issue's bar (>= 0.7x). Both are limited by the same emulator. Never fails on a timing.
#
# Knobs: COUNT (20000), CONNECTIONS (2), STREAMS (100), ROUNDS (3), OUT (result directory).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
COUNT=${COUNT:-20000}
CONNECTIONS=${CONNECTIONS:-2}
STREAMS=${STREAMS:-100}
ROUNDS=${ROUNDS:-3}
BENCH=$ROOT/tests/bench/build/push_bench
. "$ROOT/tests/bench/out.sh"
bench_out push
SUMMARY="$OUT/summary.txt"
PID=""
. "$ROOT/tests/bench/lib.sh"

start_apns "$OUT" --max-streams "$STREAMS" --lifetime 3600
trap 'kill $EMU 2>/dev/null; wait $EMU 2>/dev/null' EXIT
PORT=$EMU_PORT
TOKEN=$("$BENCH" --request apns.p8 KEY1234567 TEAM123456 payload.json)

say "# sipwake push throughput benchmark $(date -Is)"
say "# $(nproc) CPUs, $(uname -r), $(h2load --version 2>/dev/null | head -1), $("$ROOT/server/sipwake" --version)"
say "# $COUNT VoIP pushes per round, $CONNECTIONS connections, $STREAMS streams each, APNs emulator on 127.0.0.1:$PORT"
printf '%-8s %6s %10s %10s\n' round tool 'pushes/s' ok | tee -a "$SUMMARY"
H2=() SW=()
for r in $(seq 1 "$ROUNDS"); do
  out=$(h2load -n "$COUNT" -c "$CONNECTIONS" -m "$STREAMS" -d payload.json \
    -H "authorization: bearer $TOKEN" -H "apns-topic: org.example.app.voip" \
    -H "apns-push-type: voip" -H "apns-priority: 10" -H "apns-expiration: 0" \
    "https://127.0.0.1:$PORT/3/device/00000000000000000000000000000001" 2>&1)
  rate=$(printf '%s\n' "$out" | awk '/finished in/ {gsub(",", "", $4); printf "%.0f", $4}')
  ok=$(printf '%s\n' "$out" | awk '/status codes:/ {print $3}')
  printf '%-8s %6s %10s %10s\n' "$r" h2load "${rate:-0}" "${ok:-0}" | tee -a "$SUMMARY"
  H2+=("${rate:-0}")
  out=$("$BENCH" 127.0.0.1 "$PORT" cert.pem apns.p8 KEY1234567 TEAM123456 "$COUNT" "$CONNECTIONS" 2>&1)
  rate=$(printf '%s\n' "$out" | awk '/^pushes/ {print $8}')
  ok=$(printf '%s\n' "$out" | awk '/^pushes/ {print $4}')
  printf '%-8s %6s %10s %10s\n' "$r" sipwake "${rate:-0}" "${ok:-0}" | tee -a "$SUMMARY"
  SW+=("${rate:-0}")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
h2=$(median "${H2[@]}")
sw=$(median "${SW[@]}")
say ""
say "## summary"
say "$(printf '%-10s %10s\n' tool 'pushes/s')"
say "$(printf '%-10s %10s\n' h2load "$h2")"
say "$(printf '%-10s %10s   %s\n' sipwake "$sw" "$(awk -v a="$sw" -v b="$h2" 'BEGIN{ if (b>0) printf "%.2fx h2load", a/b; else print "n/a"}')")"
say "# median of $ROUNDS rounds; ok: pushes APNs answered 200. Bar (issue 4): sipwake >= 0.7x h2load."
