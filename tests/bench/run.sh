#!/usr/bin/env bash
# run.sh: `make bench`. trailhound's throughput, memory and alert latency, side by side
# with the tools a security engineer would use on the same CloudTrail file. Run by hand,
# never by `make test`: figures, not assertions (tests/bench/README.md).
#
#   bash tests/bench/run.sh
#
# Environment:
#   BENCH_EVENTS=200000   events in the corpus (regenerated when it changes)
#   BENCH_RUNS=3          runs of each tool; the tables show the fastest run (other work on
#                         the machine only ever adds time, so the best run is the least disturbed)
#   BENCH_S3=1            also replay the corpus as gzip CloudTrail S3 objects
#   BENCH_STAGES=1        also time trailhound's stages in plain Lua
#   BENCH_LATENCY=1       also time append-to-alert latency of `trailhound run`
#   BENCH_APPENDS=50      appends per latency series
set -euo pipefail
export LC_ALL=C  # one decimal separator for EPOCHREALTIME and awk; byte-wise grep

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
BIN=$ROOT/build/trailhound
B=$ROOT/build/bench
CORPUS=$B/corpus.ndjson
EVENTS=${BENCH_EVENTS:-200000}
RUNS=${BENCH_RUNS:-3}
WITH_S3=${BENCH_S3:-1}
WITH_STAGES=${BENCH_STAGES:-1}
WITH_LATENCY=${BENCH_LATENCY:-1}
APPENDS=${BENCH_APPENDS:-50}

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

[[ $EVENTS =~ ^[1-9][0-9]*$ ]] || die "BENCH_EVENTS must be a positive integer, not '$EVENTS'"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, not '$RUNS'"
[[ $APPENDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_APPENDS must be a positive integer, not '$APPENDS'"

# ---------------------------------------------------------------- tools
# Debian packages for the comparison, installed only when absent.
need_pkgs=()
command -v jq >/dev/null || need_pkgs+=(jq)
[[ -x /usr/bin/time ]] || need_pkgs+=(time)
command -v lua5.4 >/dev/null || need_pkgs+=(lua5.4)
lua5.4 -e 'require "cjson"' 2>/dev/null || need_pkgs+=(lua-cjson)
command -v gzip >/dev/null || need_pkgs+=(gzip)
if ((${#need_pkgs[@]})); then
  say "installing missing comparison tools with apt-get: ${need_pkgs[*]}"
  SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
    || die "could not install: ${need_pkgs[*]}"
fi

# ---------------------------------------------------------------- build and corpus
if [[ -z ${MAKELEVEL:-} ]]; then make -s all; fi  # under `make bench` the target built it
[[ -x $BIN ]] || die "$BIN is missing: run make"

expect_get() { sed -n "s/^$1=//p" "$B/corpus.expect" 2>/dev/null; }
stale=0
if [[ ! -f $CORPUS || ! -f $B/corpus.expect ]]; then stale=1
elif [[ $(expect_get events) != "$EVENTS" ]]; then stale=1
elif [[ $WITH_S3 != 0 && $(expect_get s3_objects) == 0 ]]; then stale=1
else
  for src in tests/bench/make-corpus.lua examples/cloudtrail/stratus-red-team.ndjson \
             examples/cloudtrail/bedrock-denied-derived.ndjson; do
    [[ $src -nt $B/corpus.expect ]] && stale=1
  done
fi
if ((stale)); then
  say "making the corpus ($EVENTS events)"
  BENCH_S3=$WITH_S3 lua5.4 tests/bench/make-corpus.lua "$EVENTS" "$B" >&2
fi
BYTES=$(expect_get bytes)
EXPECTED=$(expect_get alerts)
DENIED=$(expect_get denied)
OBJECTS=$(expect_get s3_objects)
MB=$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
say "corpus: $CORPUS, $EVENTS events, $MB MB; expected: $EXPECTED alerts (denied Bedrock calls the" \
  "two rules match), $DENIED lines with a denied error code"
cat "$CORPUS" >/dev/null  # every tool reads from the page cache, the first one too
LOAD0=$(cut -d' ' -f1 /proc/loadavg)  # other work on the machine skews every figure

# ---------------------------------------------------------------- measuring
# measure NAME BYTES OUT CMD...: run CMD $RUNS times, stdout to OUT, stderr to OUT.err;
# appends "NAME<TAB>microseconds<TAB>peak RSS KiB<TAB>BYTES" of the fastest run to $ROWS.
# Wall time from bash's EPOCHREALTIME around GNU time, peak RSS from GNU time's %M.
ROWS=$B/rows.tsv
: >"$ROWS"
measure() {
  local name=$1 bytes=$2 out=$3 i t0 t1 rc samples=()
  shift 3
  say "measuring: $name ($RUNS runs)"
  for ((i = 1; i <= RUNS; i++)); do
    rc=0
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%M' -o "$B/time.out" "$@" >"$out" 2>"$out.err" || rc=$?
    t1=$EPOCHREALTIME
    # grep -c exits 1 when it counts nothing: a figure, not a failure.
    if ((rc > 1)) || { ((rc == 1)) && [[ $1 != grep ]]; }; then
      sed -n '1,20p' "$out.err" >&2
      die "$name: '$*' exited with status $rc"
    fi
    samples+=("$((${t1/./} - ${t0/./})) $(tail -n 1 "$B/time.out")")
  done
  local best
  best=$(printf '%s\n' "${samples[@]}" | sort -n | head -n 1)
  printf '%s\t%s\t%s\t%s\n' "$name" "${best% *}" "${best#* }" "$bytes" >>"$ROWS"
}

# The alert count of a replay, from its summary on stderr; checks records and malformed.
replay_alerts() {
  local err=$1 summary
  summary=$(grep -E '^trailhound: [0-9]+ files?' "$err" | tail -n 1) || die "no summary in $err"
  [[ $summary =~ ([0-9]+)\ records?,\ ([0-9]+)\ malformed,\ ([0-9]+)\ alerts? ]] \
    || die "cannot read the summary: $summary"
  [[ ${BASH_REMATCH[1]} == "$EVENTS" && ${BASH_REMATCH[2]} == 0 ]] \
    || die "expected $EVENTS records and 0 malformed: $summary (see $err)"
  echo "${BASH_REMATCH[3]}"
}

MATCHES=()  # "NAME=COUNT", in table order
CHECKS=()   # lines printed under the table
check() {  # check NAME GOT WANT WHAT
  if [[ $2 == "$3" ]]; then CHECKS+=("ok: $1: $2 $4, as make-corpus expects")
  else CHECKS+=("MISMATCH: $1: $2 $4, make-corpus expects $3"); FAILED=1; fi
}
FAILED=0

# 1. trailhound over the NDJSON corpus.
measure "trailhound replay (NDJSON)" "$BYTES" "$B/out.trailhound" \
  "$BIN" replay --rules rules "$CORPUS"
n=$(replay_alerts "$B/out.trailhound.err")
MATCHES+=("$n"); check "trailhound replay (NDJSON)" "$n" "$EXPECTED" alerts

# 2. trailhound over the same events as gzip CloudTrail S3 objects. An object of 1,000
#    records is ~1.35 MB of JSON, read as one record: over the 1 MiB --max-line default.
if [[ $WITH_S3 != 0 && ${OBJECTS:-0} -gt 0 ]]; then
  mapfile -t objects < <(find "$B/s3" -name '*.json.gz' | sort)
  ((${#objects[@]} == OBJECTS)) || die "expected $OBJECTS S3 objects under $B/s3, found ${#objects[@]}"
  s3_bytes=$(cat "${objects[@]}" | gzip -dc | wc -c)
  s3_gz=$(cat "${objects[@]}" | wc -c)
  measure "trailhound replay (S3 .json.gz)" "$s3_bytes" "$B/out.trailhound-s3" \
    "$BIN" replay --rules rules --max-line 64M "${objects[@]}"
  n=$(replay_alerts "$B/out.trailhound-s3.err")
  MATCHES+=("$n"); check "trailhound replay (S3 .json.gz)" "$n" "$EXPECTED" alerts
fi

# 3. jq, with the filter of the two rules on the raw CloudTrail fields.
# shellcheck disable=SC2016  # $n is jq's, not the shell's
JQ_FILTER='select(.eventSource == "bedrock.amazonaws.com"
  and (.eventName as $n | ["PutFoundationModelEntitlement", "PutUseCaseForModelAccess",
       "CreateFoundationModelAgreement", "PutResourcePolicy", "DeleteResourcePolicy"] | index($n))
  and (.errorCode == "AccessDenied" or .errorCode == "AccessDeniedException"))'
JQ_NAME="jq $(jq --version | sed 's/^jq-//') (same filter)"
measure "$JQ_NAME" "$BYTES" "$B/out.jq" jq -c "$JQ_FILTER" "$CORPUS"
n=$(wc -l <"$B/out.jq")
MATCHES+=("$n"); check "jq" "$n" "$EXPECTED" "events selected"

# 4. plain lua5.4 + lua-cjson: what decoding alone costs, and decoding plus jq's filter.
measure "lua5.4 + lua-cjson: decode only" "$BYTES" "$B/out.decode" \
  lua5.4 tests/bench/stages.lua decode "$CORPUS"
MATCHES+=("-")
measure "lua5.4 + lua-cjson: decode + filter" "$BYTES" "$B/out.filter" \
  lua5.4 tests/bench/stages.lua filter "$CORPUS"
n=$(sed -n 's/.* matches=//p' "$B/out.filter")
MATCHES+=("$n"); check "lua5.4 + lua-cjson: decode + filter" "$n" "$EXPECTED" "events selected"

# 5. grep -c: raw I/O plus a byte scan, the floor. Counts every denied line (also
#    InvokeModel, other services): not the rules' answer.
measure "grep -c (denied error codes)" "$BYTES" "$B/out.grep" \
  grep -cF -e '"errorCode":"AccessDenied"' -e '"errorCode":"AccessDeniedException"' "$CORPUS"
n=$(cat "$B/out.grep")
MATCHES+=("$n"); check "grep -c" "$n" "$DENIED" "lines with a denied error code"

# ---------------------------------------------------------------- the table
print_table() {  # print_table ROWS_FILE MATCHES...
  local rows=$1
  shift
  printf '%s\n' "$@" | paste "$rows" - | awk -F'\t' -v events="$EVENTS" '
    BEGIN { printf "%-38s %8s %10s %8s %9s %8s\n", "tool", "seconds", "events/s", "MB/s", "RSS MiB", "matches"
            printf "%-38s %8s %10s %8s %9s %8s\n", "----", "-------", "--------", "----", "-------", "-------" }
    { s = $2 / 1e6
      printf "%-38s %8.2f %10.0f %8.1f %9.1f %8s\n", $1, s, events / s, $4 / 1e6 / s, $3 / 1024, $5 }'
}
echo
echo "$("$BIN" --version 2>/dev/null | head -n 1 || echo trailhound) on $(nproc) cores," \
  "$EVENTS CloudTrail events ($MB MB NDJSON), best of $RUNS runs, warm page cache," \
  "load average before: $LOAD0"
echo
print_table "$ROWS" "${MATCHES[@]}"
echo
printf '%s\n' "${CHECKS[@]}"
if [[ $WITH_S3 != 0 && ${OBJECTS:-0} -gt 0 ]]; then
  echo "S3 row: $OBJECTS objects, $(awk -v b="$s3_gz" 'BEGIN { printf "%.1f", b / 1e6 }') MB gzip;" \
    "MB/s counts the $(awk -v b="$s3_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB of JSON inside;" \
    "--max-line 64M because each object is one record of ~1.35 MB."
fi
echo "Note: jq and the Lua loops only select raw records; trailhound also normalizes every event to" \
  "ECS (Elastic's aws.cloudtrail pipeline), evaluates the rules' KQL on it and builds full Elastic" \
  "alert documents. grep counts every denied line (${DENIED}), not the rules' matches."

# ---------------------------------------------------------------- stages
if [[ $WITH_STAGES != 0 ]]; then
  : >"$B/stages.tsv"
  STAGE_MATCHES=()
  for stage in read decode normalize match host; do
    measure "stages.lua $stage" "$BYTES" "$B/out.stage-$stage" \
      lua5.4 tests/bench/stages.lua "$stage" "$CORPUS"
    STAGE_MATCHES+=("$(sed -n 's/.* matches=//p' "$B/out.stage-$stage")")
  done
  # The stage rows are the last five of $ROWS.
  tail -n 5 "$ROWS" >"$B/stages.tsv"
  echo
  echo "Where the time goes: trailhound's per-record work in plain lua5.4, best of $RUNS runs; every stage"
  echo "adds one step to the one above (tests/bench/stages.lua):"
  echo "  read: lines only | decode: + cjson.decode | normalize: + CloudTrail -> ECS |"
  echo "  match: + both rules' KQL | host: scripts/host.lua whole, alerts built (the binary minus C I/O)"
  echo
  print_table "$B/stages.tsv" "${STAGE_MATCHES[@]}"
fi

# ---------------------------------------------------------------- latency
# Time from appending one denied line to a file `trailhound run` follows until its alert
# is read from trailhound's stdout (a pipe; it flushes after every batch).
latency_series() {  # latency_series NAME PRELOAD POLL_MS
  local name=$1 preload=$2 poll=$3 dir=$B/latency f i t0 t1 lines=() samples=()
  mkdir -p "$dir"
  f=$dir/follow.ndjson
  : >"$f"
  local tmpl
  tmpl=$(head -n 1 examples/cloudtrail/bedrock-denied-derived.ndjson)
  for ((i = 0; i <= APPENDS; i++)); do
    lines+=("${tmpl/\"eventID\":\"b59279a6-d53d-4f9f-b9fb-7d91e7bdf445\"/\"eventID\":\"7b3e0000-0000-4000-9000-$(printf '%012x' "$i")\"}")
  done
  [[ ${lines[0]} != "$tmpl" ]] || die "latency: could not give the appended line a new eventID"
  coproc TH { LD_PRELOAD=$preload exec "$BIN" run --rules rules --poll "$poll" "$f" 2>"$dir/stderr"; }
  # shellcheck disable=SC2153  # TH_PID and TH are set by coproc
  local th_pid=$TH_PID th_out=${TH[0]}
  LAT_PID=$th_pid
  for ((i = 0; i < 100; i++)); do
    grep -q 'loaded from' "$dir/stderr" 2>/dev/null && break
    sleep 0.05
  done
  # Warm-up append (index 0), not counted.
  for ((i = 0; i <= APPENDS; i++)); do
    t0=$EPOCHREALTIME
    printf '%s\n' "${lines[i]}" >>"$f"
    # Stop the clock at the alert's first byte: bash reads a pipe one byte per syscall, so
    # reading the whole (several KB) line first would add milliseconds of bash, not trailhound.
    if ! IFS= read -r -N 1 -t 10 -u "$th_out"; then
      die "latency ($name): no alert within 10 s of append $i (see $dir/stderr)"
    fi
    t1=$EPOCHREALTIME
    IFS= read -r -t 10 -u "$th_out" || die "latency ($name): alert $i cut short"
    [[ $REPLY == *'"kibana":'* ]] || die "latency ($name): line $i on stdout is not an alert"
    ((i == 0)) || samples+=("$((${t1/./} - ${t0/./}))")
    # Spread the appends over the poll period: 10..240 ms, deterministic.
    sleep "0.$(printf '%03d' $((10 + (i * 97) % 231)))"
  done
  kill -TERM "$th_pid" 2>/dev/null || true
  wait "$th_pid" 2>/dev/null || true
  LAT_PID=
  printf '%s\n' "${samples[@]}" | sort -n | awk -v name="$name" '
    { v[NR] = $1 }
    END { p50 = v[int((NR * 50 + 99) / 100)]; p99 = v[int((NR * 99 + 99) / 100)]
          printf "%-46s %6d %10.1f %10.1f %10.1f\n", name, NR, p50 / 1000, p99 / 1000, v[NR] / 1000 }'
}

LAT_PID=  # the `trailhound run` of the series under way, stopped if the script dies
trap 'if [[ -n $LAT_PID ]]; then kill -TERM "$LAT_PID" 2>/dev/null || true; fi' EXIT
if [[ $WITH_LATENCY != 0 ]]; then
  # Without inotify: a shim that makes inotify_init fail, so libuv's fs events cannot start
  # and only the periodic check finds growth (as on file systems that deliver no events).
  shim=$B/no-inotify.so
  if [[ ! -f $shim || tests/bench/run.sh -nt $shim ]]; then
    printf '%s\n' '#include <errno.h>' \
      'int inotify_init(void) { errno = ENOSYS; return -1; }' \
      'int inotify_init1(int flags) { (void)flags; errno = ENOSYS; return -1; }' >"$B/no-inotify.c"
    ${CC:-cc} -shared -fPIC -O2 -o "$shim" "$B/no-inotify.c" || die "cannot build $shim"
  fi
  say "measuring: append-to-alert latency, $APPENDS appends per series"
  echo
  echo "Latency of 'trailhound run': append one denied line, until the first byte of its alert on stdout"
  echo "($APPENDS appends 10-240 ms apart after a warm-up; p50/p99 by nearest rank: below 100 appends the p99 is the max)"
  echo
  printf '%-46s %6s %10s %10s %10s\n' "path" "n" "p50 ms" "p99 ms" "max ms"
  latency_series "inotify + poll 250 ms (default)" "" 250
  latency_series "poll 250 ms only (inotify disabled)" "$shim" 250
  latency_series "poll 50 ms only (inotify disabled)" "$shim" 50
fi

if ((FAILED)); then
  echo
  die "an alert or match count differs from what make-corpus expects (see above)"
fi
