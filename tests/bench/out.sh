# out.sh — sourced by every benchmark before it writes anything: bench_out NAME makes OUT, the
# run's result directory, and makes it the working directory, so that every file of the run
# (keys, certificates, payloads, configs, databases, sipp's and the tools' own files) lands
# there and none in the repository. Expects ROOT.
#
# OUT defaults to var/bench/<time>-NAME; a relative OUT is taken under var/bench/; an absolute
# one outside the repository is used as given; one inside the repository but outside var/ is
# refused. A relative SIPWAKE is made absolute first (the working directory changes).
bench_out() {
  local name=$1
  OUT=${OUT:-$(date +%Y%m%d-%H%M%S)${name:+-$name}}
  case $OUT in
    /*) ;;
    *) OUT=$ROOT/var/bench/$OUT ;;
  esac
  case /$OUT/ in
    */../* | */./*) echo "bench: OUT=$OUT: give a path without . or .. components" >&2; exit 2 ;;
  esac
  case $OUT/ in
    "$ROOT"/var/*) ;;
    "$ROOT"/*) echo "bench: OUT=$OUT is in the repository outside var/: refused" >&2; exit 2 ;;
  esac
  case ${SIPWAKE:-} in
    '' | /*) ;;
    *) SIPWAKE=$PWD/$SIPWAKE ;;
  esac
  mkdir -p "$OUT" || { echo "bench: cannot make $OUT" >&2; exit 2; }
  cd "$OUT" || { echo "bench: cannot enter $OUT" >&2; exit 2; }
}
