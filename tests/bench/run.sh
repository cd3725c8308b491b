#!/usr/bin/env bash
# run.sh: `make bench`. trailhound's throughput, memory and alert latency, side by side
# with the tools a security engineer would use on the same CloudTrail file. Run by hand,
# never by `make test`: figures, not assertions (tests/bench/README.md).
#
#   bash tests/bench/run.sh
#
# Environment:
#   BENCH_EVENTS=200000   events in the corpus (regenerated when it changes)
#   BENCH_QUIET=10000     also a "quiet" corpus of as many events, one denied Bedrock call
#                         the rules alert on in every BENCH_QUIET (the default corpus: 3 in
#                         100); 0: none
#   BENCH_RUNS=3          runs of each tool; the tables show the fastest run (other work on
#                         the machine only ever adds time, so the best run is the least disturbed)
#   BENCH_RULES="50 500"  also replay the corpus with these many rules: rules/ and generated
#                         ones (tests/bench/make-rules.lua), beside rules/ alone; 0: none
#   BENCH_IMPORTED=1      with BENCH_RULES, also replay with every rule `trailhound import` makes
#                         of tests/fixtures' Elastic AWS and Sigma CloudTrail rules that loads; 0: no
#   BENCH_S3=1            also replay the corpus as gzip CloudTrail S3 objects
#   BENCH_STAGES=1        also time trailhound's stages in plain Lua
#   BENCH_CPU_SPLIT=1     also split trailhound's CPU time between the host and its workers
#   BENCH_BASELINE=       another trailhound binary (say, one built from the commit before the
#                         workers) measured in the same runs: a replay row, a latency series
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
QUIET=${BENCH_QUIET:-10000}
QUIET_CORPUS=$B/quiet.ndjson
RULE_COUNTS=${BENCH_RULES-50 500}
[[ $RULE_COUNTS == 0 ]] && RULE_COUNTS=
WITH_IMPORTED=${BENCH_IMPORTED:-1}
WITH_STAGES=${BENCH_STAGES:-1}
WITH_LATENCY=${BENCH_LATENCY:-1}
WITH_CPU_SPLIT=${BENCH_CPU_SPLIT:-1}
APPENDS=${BENCH_APPENDS:-50}
BASELINE=${BENCH_BASELINE:-}

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

[[ $EVENTS =~ ^[1-9][0-9]*$ ]] || die "BENCH_EVENTS must be a positive integer, not '$EVENTS'"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, not '$RUNS'"
[[ $QUIET =~ ^(0|[1-9][0-9]*)$ ]] || die "BENCH_QUIET must be 0 or a positive integer, not '$QUIET'"
BUNDLED_RULES=$(find rules -maxdepth 1 -name '[!.]*.lua' | wc -l)  # what the loader loads of rules/
for n in $RULE_COUNTS; do
  if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n <= BUNDLED_RULES)); then
    die "BENCH_RULES: '$n' is not a number of rules above the $BUNDLED_RULES of rules/"
  fi
done
[[ $APPENDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_APPENDS must be a positive integer, not '$APPENDS'"
[[ -z $BASELINE || -x $BASELINE ]] || die "BENCH_BASELINE: '$BASELINE' is not an executable"

# ---------------------------------------------------------------- tools
# Debian packages for the comparison, installed only when absent.
need_pkgs=()
command -v jq >/dev/null || need_pkgs+=(jq)
[[ -x /usr/bin/time ]] || need_pkgs+=(time)
command -v lua5.4 >/dev/null || need_pkgs+=(lua5.4)
lua5.4 -e 'require "cjson"' 2>/dev/null || need_pkgs+=(lua-cjson)
command -v gzip >/dev/null || need_pkgs+=(gzip)
# Debian's own python3, named by path: python3-ujson installs into it, and a python3 earlier
# on PATH (pyenv, a virtualenv) may lack ujson. Both python rows run it, so they differ by
# the decoder alone.
PY=/usr/bin/python3
[[ -x $PY ]] || need_pkgs+=(python3)
"$PY" -c 'import ujson' 2>/dev/null || need_pkgs+=(python3-ujson)
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

# expect_get NAME KEY: a fact make-corpus wrote about $B/NAME.ndjson (NAME: corpus, quiet).
expect_get() { sed -n "s/^$2=//p" "$B/$1.expect" 2>/dev/null; }
# stale NAME DENIED_EVERY: true when $B/NAME.ndjson is missing or not what make-corpus would
# write now (another event count or rate, a newer generator or source, S3 objects wanted).
stale() {
  local name=$1 every=$2 src
  [[ -f $B/$name.ndjson && -f $B/$name.expect ]] || return 0
  [[ $(expect_get "$name" events) == "$EVENTS" ]] || return 0
  [[ $(expect_get "$name" denied_every) == "$every" ]] || return 0
  [[ $name != corpus || $WITH_S3 == 0 || $(expect_get corpus s3_objects) != 0 ]] || return 0
  for src in tests/bench/make-corpus.lua examples/cloudtrail/stratus-red-team.ndjson \
             examples/cloudtrail/bedrock-denied-derived.ndjson; do
    [[ $src -nt $B/$name.expect ]] && return 0
  done
  return 1
}
if stale corpus 0; then
  say "making the corpus ($EVENTS events)"
  BENCH_S3=$WITH_S3 lua5.4 tests/bench/make-corpus.lua "$EVENTS" "$B" >&2
fi
BYTES=$(expect_get corpus bytes)
EXPECTED=$(expect_get corpus alerts)
DENIED=$(expect_get corpus denied)
OBJECTS=$(expect_get corpus s3_objects)
MB=$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
say "corpus: $CORPUS, $EVENTS events, $MB MB; expected: $EXPECTED alerts (denied Bedrock calls the" \
  "two rules match), $DENIED lines with a denied error code"
if ((QUIET)); then
  if stale quiet "$QUIET"; then
    say "making the quiet corpus ($EVENTS events, a denied Bedrock call in $QUIET)"
    lua5.4 tests/bench/make-corpus.lua "$EVENTS" "$B" "$QUIET" >&2
  fi
  QUIET_BYTES=$(expect_get quiet bytes)
  QUIET_EXPECTED=$(expect_get quiet alerts)
  QUIET_MB=$(awk -v b="$QUIET_BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
  say "quiet corpus: $QUIET_CORPUS, $EVENTS events, $QUIET_MB MB; expected: $QUIET_EXPECTED alerts"
  cat "$QUIET_CORPUS" >/dev/null
fi
cat "$CORPUS" >/dev/null  # every tool reads from the page cache, the first one too
LOAD0=$(cut -d' ' -f1 /proc/loadavg)  # other work on the machine skews every figure

# ---------------------------------------------------------------- measuring
# run_once KEY OUT CMD...: one run of CMD, stdout to OUT, stderr to OUT.err; appends
# "microseconds peak-RSS-KiB CPU-seconds host-MiB worker-MiB" to $B/samples.KEY. Wall time
# from bash's EPOCHREALTIME around GNU time; peak RSS (%M) and CPU seconds (user + system,
# %U + %S) from GNU time. %U and %S count the children CMD waited for: trailhound's workers,
# which the host reaps before it exits. %M is the largest single process, not a sum, so for
# trailhound it cannot tell the host from a worker: a host that knows prints, at the end of
# a replay, "trailhound: peak memory: host 9.8 MiB, largest worker 41.2 MiB", read here
# ("-" and "-" when the line is absent: another command, or a build that does not print it).
run_once() {
  local key=$1 out=$2 t0 t1 rc=0 rss user sys host=- worker=- peak
  shift 2
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%M %U %S' -o "$B/time.out" "$@" >"$out" 2>"$out.err" || rc=$?
  t1=$EPOCHREALTIME
  # grep -c exits 1 when it counts nothing: a figure, not a failure.
  if ((rc > 1)) || { ((rc == 1)) && [[ $1 != grep ]]; }; then
    sed -n '1,20p' "$out.err" >&2
    die "$key: '$*' exited with status $rc"
  fi
  # A command that exits non-zero makes GNU time write a line before the figures.
  read -r rss user sys < <(tail -n 1 "$B/time.out")
  peak=$(grep -E '^trailhound: peak memory: ' "$out.err" | tail -n 1) || true
  if [[ $peak =~ ^trailhound:\ peak\ memory:\ host\ ([0-9.]+)\ MiB,\ largest\ worker\ ([0-9.]+)\ MiB$ ]]; then
    host=${BASH_REMATCH[1]} worker=${BASH_REMATCH[2]}
  fi
  printf '%s %s %s %s %s\n' "$((${t1/./} - ${t0/./}))" "$rss" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" "$host" "$worker" >>"$B/samples.$key"
}

# Each table is a file of rows, $ROWS: set it before measuring the rows of a table.
# best KEY NAME BYTES: the fastest run of KEY as a row of $ROWS: "NAME<TAB>microseconds<TAB>
# peak RSS KiB<TAB>BYTES<TAB>CPU seconds<TAB>host MiB<TAB>worker MiB" (all of that one run).
# matches N: the row's match count, in $ROWS.matches, one line per row in the same order.
best() {
  local us rss cpu host worker
  read -r us rss cpu host worker < <(sort -n "$B/samples.$1" | head -n 1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$2" "$us" "$rss" "$3" "$cpu" "$host" "$worker" >>"$ROWS"
}
matches() { printf '%s\n' "$1" >>"$ROWS.matches"; }
new_table() { ROWS=$B/$1.tsv; : >"$ROWS"; : >"$ROWS.matches"; }

# measure NAME BYTES OUT CMD...: CMD $RUNS times in a row, then its fastest run as a row.
measure() {
  local name=$1 bytes=$2 out=$3 key i
  shift 3
  key=$(printf '%s' "$name" | tr -c 'A-Za-z0-9' '_')
  : >"$B/samples.$key"
  say "measuring: $name ($RUNS runs)"
  for ((i = 1; i <= RUNS; i++)); do run_once "$key" "$out" "$@"; done
  best "$key" "$name" "$bytes"
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

CHECKS=()  # lines printed under the table being measured, then emptied
FAILED=0
check() {  # check NAME GOT WANT WHAT
  if [[ $2 == "$3" ]]; then CHECKS+=("ok: $1: $2 $4, as make-corpus expects")
  else CHECKS+=("MISMATCH: $1: $2 $4, make-corpus expects $3"); FAILED=1; fi
}

# replays TAG CORPUS BYTES WANT: the replays of R_NAMES (R_KEYS, R_BINS, R_ARGS, R_RULES
# alike: the caller fills them; a rule folder left out is rules/), RUNS times each,
# interleaved run by run so that other work on the machine weighs on each alike; then a
# row each in $ROWS. Every run's alert count must be WANT; with WANT written ">=N", at
# least N (rule sets that alert on more than the two rules). Its alerts' kibana.alert.uuid,
# in order, must be the first run's: any number of workers, with or without the prefilter,
# must write the same alerts in input order. With WANT ">=N" the rule sets differ, so each
# is held to its own first run.
replays() {
  local tag=$1 corpus=$2 bytes=$3 want=$4 i k key n uuids ref bad='' extra
  local -A refs=()
  for key in "${R_KEYS[@]}"; do : >"$B/samples.$tag-$key"; done
  say "measuring: ${R_NAMES[*]} ($RUNS runs each, interleaved)"
  for ((i = 1; i <= RUNS; i++)); do
    for k in "${!R_KEYS[@]}"; do
      key=$tag-${R_KEYS[k]}
      extra=''
      [[ ${R_BINS[k]} == "$BIN" ]] && extra=$NOMAX
      # shellcheck disable=SC2086  # R_ARGS, extra: words on purpose
      run_once "$key" "$B/out.$key" "${R_BINS[k]}" replay $extra ${R_ARGS[k]} --rules "${R_RULES[k]:-rules}" "$corpus"
      n=$(replay_alerts "$B/out.$key.err")
      if [[ $want == '>='* ]]; then
        ((n >= ${want#>=})) || check "${R_NAMES[k]} (run $i)" "$n" "at least ${want#>=}" alerts
      else
        [[ $n == "$want" ]] || check "${R_NAMES[k]} (run $i)" "$n" "$want" alerts
      fi
      uuids=$({ grep -o '"uuid":"[^"]*"' "$B/out.$key" || true; } | md5sum)  # none: grep exits 1
      ref=all; [[ $want == '>='* ]] && ref=$key
      if [[ -z ${refs[$ref]:-} ]]; then refs[$ref]=$uuids
      elif [[ $uuids != "${refs[$ref]}" ]]; then bad+="${bad:+, }${R_NAMES[k]} (run $i)"; fi
    done
  done
  for k in "${!R_KEYS[@]}"; do
    key=$tag-${R_KEYS[k]}
    best "$key" "${R_NAMES[k]}" "$bytes"
    n=$(replay_alerts "$B/out.$key.err")
    matches "$n"
    if [[ $want == '>='* ]]; then
      if ((n >= ${want#>=})); then CHECKS+=("ok: ${R_NAMES[k]}: $n alerts, at least the two rules' ${want#>=}")
      else check "${R_NAMES[k]}" "$n" "at least ${want#>=}" alerts; fi
    else
      check "${R_NAMES[k]}" "$n" "$want" alerts
    fi
  done
  if [[ -n $bad ]]; then
    CHECKS+=("MISMATCH: alerts (kibana.alert.uuid, in order) differ from the first run's in: $bad")
    FAILED=1
  elif [[ $want == '>='* ]]; then
    CHECKS+=("ok: every rule set wrote the same alerts in the same order run after run (kibana.alert.uuid)")
  else
    CHECKS+=("ok: the $((RUNS * ${#R_KEYS[@]})) runs wrote the same alerts in the same order (kibana.alert.uuid)")
  fi
}

# print_table ROWS_FILE [OPTION]: a table of the rows of ROWS_FILE and their matches.
#   --ratio    two last columns: the row's seconds over the first row's, and its CPU seconds
#              over the first row's
#   --no-peak  without trailhound's own peak memory (host MiB, worker MiB): for rows that are
#              never a trailhound replay
print_table() {
  paste "$1" "$1.matches" | awk -F'\t' -v events="$EVENTS" -v opt="${2:-}" '
    function cols(a, b, c, d, e, f, g, h, i, j, k) {
      printf "%-46s %8s %7s %10s %8s %8s", a, b, c, d, e, f
      if (opt != "--no-peak") printf " %9s %10s", g, h
      printf " %8s", i
      if (opt == "--ratio") printf " %9s %7s", j, k
      printf "\n" }
    BEGIN { cols("tool", "seconds", "CPU s", "events/s", "MB/s", "RSS MiB", "host MiB", "worker MiB", "matches",
                 "time", "CPU")
            cols("----", "-------", "-----", "--------", "----", "-------", "--------", "----------", "-------",
                 "----", "---") }
    { s = $2 / 1e6
      if (NR == 1) { first = s; first_cpu = $5 }
      cols($1, sprintf("%.2f", s), $5, sprintf("%.0f", events / s), sprintf("%.1f", $4 / 1e6 / s),
           sprintf("%.1f", $3 / 1024), $6, $7, $8, sprintf("%.2fx", s / first),
           first_cpu > 0 ? sprintf("%.2fx", $5 / first_cpu) : "-") }'
}

# row_field TABLE NAME FIELD: a field of the row NAME of $B/TABLE.tsv (2: microseconds,
# 3: peak RSS KiB, 5: CPU seconds, 6: host MiB, 7: worker MiB).
row_field() { awk -F'\t' -v name="$2" -v f="$3" '$1 == name { print $f }' "$B/$1.tsv"; }

# A trailhound that has the raw-bytes prefilter says so in its help: then it is measured
# with and without it (--no-prefilter), the same alerts required of both. Both helps: a
# build whose replay takes no --help lists replay's options in trailhound --help.
th_help="$("$BIN" replay --help 2>&1 || true) $("$BIN" --help 2>&1 || true)"
PREFILTER=0
[[ $th_help == *--no-prefilter* ]] && PREFILTER=1
# The corpus puts thousands of alerts in a few minutes of event time: every one is written
# (--no-max-signals), so that every row builds the same alerts.
NOMAX=''
[[ $th_help == *--no-max-signals* ]] && NOMAX=--no-max-signals

# ---------------------------------------------------------------- the default corpus
# 1. trailhound over the NDJSON corpus: one evaluation worker, two, and the default (one per
#    core); one worker without the prefilter when there is one; and BENCH_BASELINE's binary
#    if given.
new_table main
CORES=$(getconf _NPROCESSORS_ONLN)
R_KEYS=(w1 w2 default)
R_NAMES=("trailhound replay --workers 1" "trailhound replay --workers 2" "trailhound replay default ($CORES)")
R_ARGS=("--workers 1" "--workers 2" "")
R_BINS=("$BIN" "$BIN" "$BIN")
R_RULES=()
if ((PREFILTER)); then
  R_KEYS+=(w1-nopf) R_NAMES+=("trailhound replay --workers 1 --no-prefilter")
  R_ARGS+=("--workers 1 --no-prefilter") R_BINS+=("$BIN")
fi
if [[ -n $BASELINE ]]; then
  R_KEYS+=(baseline) R_NAMES+=("baseline replay") R_ARGS+=("") R_BINS+=("$BASELINE")
fi
TH_NAMES=("${R_NAMES[@]}")  # for the speed-up under the table
replays th "$CORPUS" "$BYTES" "$EXPECTED"

# 1b. The replay as users run it, the rules' max_signals (100 in each 5-minute window) applied:
#     once a window is full the host tells the workers, and they build none of the alerts held
#     back there. Written: at most 100 of each rule's alerts in each window.
if [[ -n $NOMAX ]]; then
  MAXSIG_NAME="trailhound replay --workers 1, max_signals"
  measure "$MAXSIG_NAME" "$BYTES" "$B/out.maxsig" "$BIN" replay --workers 1 --rules rules "$CORPUS"
  n=$(replay_alerts "$B/out.maxsig.err")
  matches "$n"
  held=$(sed -n 's/^trailhound: .*: \([0-9]*\) held back by max_signals.*/\1/p' "$B/out.maxsig.err" |
    awk '{ s += $1 } END { print s + 0 }')
  check "$MAXSIG_NAME: written and held back" "$((n + held))" "$EXPECTED" alerts
  unbuilt=$(sed -n 's/.*(\([0-9]*\) never built: .*/\1/p' "$B/out.maxsig.err" | awk '{ s += $1 } END { print s + 0 }')
  CHECKS+=("$MAXSIG_NAME: $n alerts written, $held held back, $unbuilt of them never built")
fi

# 2. trailhound over the same events as gzip CloudTrail S3 objects, with two workers. An
#    object of 1,000 records is ~1.35 MB of JSON, read as one record: over the 1 MiB
#    --max-line default.
if [[ $WITH_S3 != 0 && ${OBJECTS:-0} -gt 0 ]]; then
  mapfile -t objects < <(find "$B/s3" -name '*.json.gz' | sort)
  ((${#objects[@]} == OBJECTS)) || die "expected $OBJECTS S3 objects under $B/s3, found ${#objects[@]}"
  s3_bytes=$(cat "${objects[@]}" | gzip -dc | wc -c)
  s3_gz=$(cat "${objects[@]}" | wc -c)
  measure "trailhound replay (S3 .json.gz) --workers 2" "$s3_bytes" "$B/out.trailhound-s3" \
    "$BIN" replay $NOMAX --workers 2 --rules rules --max-line 64M "${objects[@]}"
  n=$(replay_alerts "$B/out.trailhound-s3.err")
  matches "$n"; check "trailhound replay (S3 .json.gz) --workers 2" "$n" "$EXPECTED" alerts
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
matches "$n"; check "jq" "$n" "$EXPECTED" "events selected"

# 4. plain lua5.4 + lua-cjson: what decoding alone costs, and decoding plus jq's filter.
LUA_FILTER="lua5.4 + lua-cjson: decode + filter"
measure "lua5.4 + lua-cjson: decode only" "$BYTES" "$B/out.decode" \
  lua5.4 tests/bench/stages.lua decode "$CORPUS"
matches "-"
measure "$LUA_FILTER" "$BYTES" "$B/out.filter" lua5.4 tests/bench/stages.lua filter "$CORPUS"
n=$(sed -n 's/.* matches=//p' "$B/out.filter")
matches "$n"; check "$LUA_FILTER" "$n" "$EXPECTED" "events selected"

# 5. python3, the same loop with the standard json module and with ujson (a C decoder
#    like lua-cjson): what the job costs in the other language a security engineer scripts in.
PY_NAMES=(json "ujson $("$PY" -c 'import ujson; print(ujson.__version__)')")
PY_VER=$("$PY" -c 'import platform; print(platform.python_version())')
for k in 0 1; do
  mod=${PY_NAMES[k]%% *} name="python $PY_VER + ${PY_NAMES[k]}: decode + filter"
  measure "$name" "$BYTES" "$B/out.py-$mod" "$PY" tests/bench/filter.py "$mod" "$CORPUS"
  n=$(sed -n 's/.* matches=//p' "$B/out.py-$mod")
  matches "$n"; check "$name" "$n" "$EXPECTED" "events selected"
done

# 6. grep -c: raw I/O plus a byte scan, the floor. Counts every denied line (also
#    InvokeModel, other services): not the rules' answer.
measure "grep -c (denied error codes)" "$BYTES" "$B/out.grep" \
  grep -cF -e '"errorCode":"AccessDenied"' -e '"errorCode":"AccessDeniedException"' "$CORPUS"
n=$(cat "$B/out.grep")
matches "$n"; check "grep -c" "$n" "$DENIED" "lines with a denied error code"

echo
echo "$("$BIN" --version 2>/dev/null | head -n 1 || echo trailhound) on $(nproc) cores," \
  "$EVENTS CloudTrail events ($MB MB NDJSON), best of $RUNS runs, warm page cache," \
  "load average before: $LOAD0, after: $(cut -d' ' -f1 /proc/loadavg)"
echo
print_table "$B/main.tsv"
echo
# The speed-up of two workers over one, from the fastest runs; and the CPU each took.
awk -v s1="$(row_field main "${TH_NAMES[0]}" 2)" -v s2="$(row_field main "${TH_NAMES[1]}" 2)" \
    -v c1="$(row_field main "${TH_NAMES[0]}" 5)" -v c2="$(row_field main "${TH_NAMES[1]}" 5)" 'BEGIN {
  printf "speed-up of --workers 2 over --workers 1: %.2fx (%.2f s -> %.2f s, fastest runs);", s1 / s2, s1 / 1e6, s2 / 1e6
  printf " CPU s %.2f -> %.2f (%+.0f %%); CPU s per wall s %.2f -> %.2f\n", c1, c2, (c2 / c1 - 1) * 100,
    c1 / (s1 / 1e6), c2 / (s2 / 1e6) }'
echo "CPU s: user + system seconds of the row's fastest run (GNU time %U + %S), the workers' included" \
  "(the host reaps them before it exits)."
echo "RSS MiB: the largest single process (GNU time %M), not a sum. host MiB, worker MiB: trailhound's own" \
  "peak RSS of its host and of its largest worker, from the line it prints at the end of a replay" \
  "('-': none printed)."
if ((!PREFILTER)); then echo "No --no-prefilter row: '$BIN replay --help' and '--help' do not mention it."; fi
if [[ -n $BASELINE ]]; then echo "baseline: $BASELINE ($("$BASELINE" --version 2>/dev/null | head -n 1))"; fi
printf '%s\n' "${CHECKS[@]}"
CHECKS=()
if [[ $WITH_S3 != 0 && ${OBJECTS:-0} -gt 0 ]]; then
  echo "S3 row: $OBJECTS objects, $(awk -v b="$s3_gz" 'BEGIN { printf "%.1f", b / 1e6 }') MB gzip;" \
    "MB/s counts the $(awk -v b="$s3_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB of JSON inside;" \
    "--max-line 64M because each object is one record of ~1.35 MB."
fi
echo "Note: jq and the Lua and python loops only select raw records; trailhound also normalizes every event to" \
  "ECS (Elastic's aws.cloudtrail pipeline), evaluates the rules' KQL on it and builds full Elastic" \
  "alert documents. grep counts every denied line (${DENIED}), not the rules' matches."

# ---------------------------------------------------------------- the quiet corpus
# The same real events with a denied Bedrock call in BENCH_QUIET, as an account's everyday
# traffic is: almost nothing to alert on. What trailhound costs per event when it mostly
# finds nothing (and what a prefilter on raw bytes saves then), beside jq and lua-cjson on
# the same file.
if ((QUIET)); then
  new_table quiet
  R_KEYS=(w1 default)
  R_NAMES=("trailhound replay --workers 1" "trailhound replay default ($CORES)")
  R_ARGS=("--workers 1" "")
  R_BINS=("$BIN" "$BIN")
  R_RULES=()
  if ((PREFILTER)); then
    R_KEYS+=(w1-nopf) R_NAMES+=("trailhound replay --workers 1 --no-prefilter")
    R_ARGS+=("--workers 1 --no-prefilter") R_BINS+=("$BIN")
  fi
  replays quiet "$QUIET_CORPUS" "$QUIET_BYTES" "$QUIET_EXPECTED"
  measure "$JQ_NAME" "$QUIET_BYTES" "$B/out.quiet-jq" jq -c "$JQ_FILTER" "$QUIET_CORPUS"
  n=$(wc -l <"$B/out.quiet-jq")
  matches "$n"; check "jq" "$n" "$QUIET_EXPECTED" "events selected"
  measure "$LUA_FILTER" "$QUIET_BYTES" "$B/out.quiet-filter" lua5.4 tests/bench/stages.lua filter "$QUIET_CORPUS"
  n=$(sed -n 's/.* matches=//p' "$B/out.quiet-filter")
  matches "$n"; check "$LUA_FILTER" "$n" "$QUIET_EXPECTED" "events selected"

  echo
  echo "Quiet corpus: the same real events, one denied Bedrock call the rules alert on in every $QUIET" \
    "($EVENTS events, $QUIET_MB MB NDJSON), best of $RUNS runs, load average after: $(cut -d' ' -f1 /proc/loadavg)"
  echo
  print_table "$B/quiet.tsv"
  echo
  printf '%s\n' "${CHECKS[@]}"
  CHECKS=()
fi

# ---------------------------------------------------------------- rules
# What more rules cost: the default corpus replayed with rules/ as is, and with each count
# of BENCH_RULES, rules/ and generated rules that look like real ones (make-rules.lua),
# interleaved run by run. --workers 1: the cost on one core, whatever the other does.
# Every folder holds the two Bedrock rules, so every run must alert at least as often as
# they do; the generated ones are chosen to alert, together, no more than those two. Each
# count is also run with generated rules that alert on nothing here ("silent"): what the
# rules cost apart from the alerts they write.
if [[ -n $RULE_COUNTS ]]; then
  new_table rules
  R_KEYS=(rules) R_NAMES=("$BUNDLED_RULES rules (rules/)") R_ARGS=("--workers 1") R_BINS=("$BIN") R_RULES=(rules)
  for n in $RULE_COUNTS; do
    say "writing $n rules to $B/rules-$n and $B/rules-$n-silent"
    lua5.4 tests/bench/make-rules.lua "$n" "$B/rules-$n" >&2
    lua5.4 tests/bench/make-rules.lua "$n" "$B/rules-$n-silent" silent >&2
    R_KEYS+=("rules-$n") R_NAMES+=("$n rules ($BUNDLED_RULES + $((n - BUNDLED_RULES)) generated)")
    R_ARGS+=("--workers 1") R_BINS+=("$BIN") R_RULES+=("$B/rules-$n")
    R_KEYS+=("rules-$n-silent") R_NAMES+=("$n rules ($BUNDLED_RULES + $((n - BUNDLED_RULES)) generated, silent)")
    R_ARGS+=("--workers 1") R_BINS+=("$BIN") R_RULES+=("$B/rules-$n-silent")
  done
  # The rules people bring: Elastic's AWS rules and SigmaHQ's CloudTrail rules, as imported
  # (those of a type the host cannot run yet are refused at load, and counted out).
  if [[ $WITH_IMPORTED != 0 ]]; then
    say "importing Elastic's AWS rules and Sigma's CloudTrail rules to $B/rules-imported"
    rm -rf "$B/rules-imported"
    "$BIN" import tests/fixtures/elastic-detection-rules-aws tests/fixtures/sigma-cloudtrail \
      --out "$B/rules-imported" >"$B/import.out" 2>&1 || true
    tail -n 1 "$B/import.out" | sed 's/^/bench: import: /' >&2
    # what loads: the modules written, less those check finds an error in
    "$BIN" check "$B/rules-imported" >"$B/import.check" 2>&1 || true  # errors: the types not run yet
    IMPORTED=$(( $(find "$B/rules-imported" -name '*.lua' | wc -l) -
      $(sed -n 's/^\([^:]*\.lua\):[0-9]*: error:.*/\1/p' "$B/import.check" | sort -u | wc -l) ))
    R_KEYS+=("rules-imported") R_NAMES+=("$IMPORTED rules (imported: Elastic AWS, Sigma CloudTrail)")
    R_ARGS+=("--workers 1") R_BINS+=("$BIN") R_RULES+=("$B/rules-imported")
  fi
  replays rules "$CORPUS" "$BYTES" ">=$EXPECTED"
  for k in "${!R_KEYS[@]}"; do  # the host must have taken every rule of the folder
    n=$(sed -n 's/^trailhound: \([0-9]*\) rules\{0,1\} loaded.*/\1/p' "$B/out.rules-${R_KEYS[k]}.err")
    want=${R_NAMES[k]%% *}
    if [[ $n == "$want" ]]; then CHECKS+=("ok: ${R_NAMES[k]}: trailhound says $n rules loaded")
    else CHECKS+=("MISMATCH: ${R_NAMES[k]}: trailhound says ${n:-no} rules loaded"); FAILED=1; fi
  done

  echo
  echo "Rules: the corpus replayed with --workers 1 and more rules, best of $RUNS runs, load average after:" \
    "$(cut -d' ' -f1 /proc/loadavg)"
  echo
  print_table "$B/rules.tsv" --ratio
  echo
  echo "time: the row's seconds over the first row's; CPU: its CPU seconds over the first row's (with one" \
    "worker the host reads and scans while the worker evaluates: the first row's seconds are less than its" \
    "CPU seconds when a core is free for each, so a row whose worker does more shows a larger time ratio)." \
    "Generated rules: tests/bench/make-rules.lua; they alert," \
    "all together, on no more of the corpus's source events than the two Bedrock rules (about as many" \
    "alerts again, on larger events); silent: on none of them."
  printf '%s\n' "${CHECKS[@]}"
  CHECKS=()
fi

# ---------------------------------------------------------------- CPU by process
# One more run of each worker count, its CPU seconds split between the host and each worker
# (tests/bench/cpu-split.lua reads /proc every 10 ms): the per-event cost on either side of
# the pipes, and how evenly the workers share the work, whatever else runs on the machine.
if [[ $WITH_CPU_SPLIT != 0 ]]; then
  say "measuring: CPU by process, one run each of --workers 1 and --workers 2"
  echo
  echo "CPU by process: one more run each, /proc/PID/stat of the host and its workers read every 10 ms"
  echo "(tests/bench/cpu-split.lua; the gate worker loads and tests rule files, the others evaluate)"
  echo
  lua5.4 tests/bench/cpu-split.lua --header
  for w in 1 2; do
    lua5.4 tests/bench/cpu-split.lua "replay (NDJSON) --workers $w" "$EVENTS" "$B/out.cpu-split" \
      "$B/out.cpu-split.err" "$BIN" replay $NOMAX --workers "$w" --rules rules "$CORPUS" || die "cpu-split failed"
    n=$(replay_alerts "$B/out.cpu-split.err")
    [[ $n == "$EXPECTED" ]] || die "cpu-split: $n alerts, make-corpus expects $EXPECTED"
  done
fi

# ---------------------------------------------------------------- stages
if [[ $WITH_STAGES != 0 ]]; then
  new_table stages
  for stage in read decode normalize match host; do
    measure "stages.lua $stage" "$BYTES" "$B/out.stage-$stage" \
      lua5.4 tests/bench/stages.lua "$stage" "$CORPUS"
    matches "$(sed -n 's/.* matches=//p' "$B/out.stage-$stage")"
  done
  echo
  echo "Where the time goes: trailhound's per-record work in plain lua5.4, best of $RUNS runs; every stage"
  echo "adds one step to the one above (tests/bench/stages.lua):"
  echo "  read: lines only | decode: + cjson.decode | normalize: + CloudTrail -> ECS |"
  echo "  match: + both rules' KQL | host: scripts/worker.lua whole, alerts built (one worker's work"
  echo "  minus the C framing and the pipes)"
  echo
  print_table "$B/stages.tsv" --no-peak
fi

# ---------------------------------------------------------------- latency
# Time from appending one denied line to a file `trailhound run` follows until its alert
# is read from trailhound's stdout (a pipe; it flushes after every batch). --no-state: each
# series starts on an empty file whatever an earlier one left, and the user's state file is
# not touched.
latency_series() {  # latency_series NAME PRELOAD POLL_MS [ARGS...]: ARGS go to trailhound run
  local name=$1 preload=$2 poll=$3 dir=$B/latency f i t0 t1 lines=() samples=()
  shift 3
  mkdir -p "$dir"
  f=$dir/follow.ndjson
  : >"$f"
  local tmpl
  tmpl=$(head -n 1 examples/cloudtrail/bedrock-denied-derived.ndjson)
  for ((i = 0; i <= APPENDS; i++)); do
    lines+=("${tmpl/\"eventID\":\"b59279a6-d53d-4f9f-b9fb-7d91e7bdf445\"/\"eventID\":\"7b3e0000-0000-4000-9000-$(printf '%012x' "$i")\"}")
  done
  [[ ${lines[0]} != "$tmpl" ]] || die "latency: could not give the appended line a new eventID"
  # LAT_GLOB=1: follow the folder's *.ndjson, as users name their logs, rather than the file.
  local path=$f
  [[ -z ${LAT_GLOB:-} ]] || path="$dir/*.ndjson"
  local nomax=$NOMAX
  [[ -z ${LAT_BIN:-} ]] || nomax=''
  # shellcheck disable=SC2086  # nomax: no word when empty
  coproc TH { LD_PRELOAD=$preload exec "${LAT_BIN:-$BIN}" run --no-state $nomax --rules rules --poll "$poll" "$@" "$path" 2>"$dir/stderr"; }
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
  echo "($APPENDS appends 10-240 ms apart after a warm-up; p50/p99 by nearest rank: below 100 appends the p99 is the max;"
  echo "load average before: $(cut -d' ' -f1 /proc/loadavg); a series runs the default $CORES workers unless it says otherwise)"
  echo
  printf '%-46s %6s %10s %10s %10s\n' "path" "n" "p50 ms" "p99 ms" "max ms"
  latency_series "inotify + poll 250 ms (default)" "" 250
  latency_series "inotify + poll 250 ms, --workers 1" "" 250 --workers 1
  LAT_GLOB=1 latency_series "inotify + poll 250 ms, a glob (DIR/*.ndjson)" "" 250
  if [[ -n $BASELINE ]]; then LAT_BIN=$BASELINE latency_series "inotify + poll 250 ms, baseline" "" 250; fi
  latency_series "poll 250 ms only (inotify disabled)" "$shim" 250
  latency_series "poll 50 ms only (inotify disabled)" "$shim" 50
fi

# ---------------------------------------------------------------- summary
# The figures the work on trailhound's speed is judged by, as ratios of the rows above
# (each row its fastest run), so they can be read without the tables.
summary() { printf '  %-58s %10s  %s\n' "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else printf "-" }'; }
W1="trailhound replay --workers 1"
w1_cpu=$(row_field main "$W1" 5)
echo
echo "Summary: the figures the speed work targets, from the tables above (fastest runs)"
echo
jq_cpu=$(row_field main "$JQ_NAME" 5) lua_cpu=$(row_field main "$LUA_FILTER" 5)
summary "CPU s, trailhound --workers 1 over jq" "$(ratio "$w1_cpu" "$jq_cpu")" "($w1_cpu s / $jq_cpu s)"
summary "CPU s, trailhound --workers 1 over the lua-cjson loop" "$(ratio "$w1_cpu" "$lua_cpu")" \
  "($w1_cpu s / $lua_cpu s)"
if [[ -n $NOMAX ]]; then
  maxsig_cpu=$(row_field main "$MAXSIG_NAME" 5)
  summary "CPU s, max_signals applied over every alert written" "$(ratio "$maxsig_cpu" "$w1_cpu")" \
    "($maxsig_cpu s / $w1_cpu s, --workers 1)"
fi
if ((QUIET)); then
  q_cpu=$(row_field quiet "$W1" 5)
  summary "quiet corpus: events per CPU second, trailhound --workers 1" \
    "$(awk -v e="$EVENTS" -v c="$q_cpu" 'BEGIN { if (c > 0) printf "%.0f", e / c; else printf "-" }')" "($EVENTS events / $q_cpu CPU s)"
  if ((PREFILTER)); then
    nopf_cpu=$(row_field quiet "$W1 --no-prefilter" 5)
    summary "quiet corpus: CPU s without the prefilter over with it" "$(ratio "$nopf_cpu" "$q_cpu")" \
      "($nopf_cpu s / $q_cpu s, --workers 1)"
  fi
else
  summary "quiet corpus: events per CPU second, trailhound --workers 1" "-" "(BENCH_QUIET=0)"
fi
if [[ -n $RULE_COUNTS ]]; then
  first=$(head -n 1 "$B/rules.tsv") last=$(grep -v -e ', silent)' -e '(imported' "$B/rules.tsv" | tail -n 1)
  us_first=$(cut -f2 <<<"$first")
  for row in "$last" "$(grep ', silent)' "$B/rules.tsv" | tail -n 1)" "$(grep '(imported' "$B/rules.tsv")"; do
    [[ -n $row ]] || continue
    us_row=$(cut -f2 <<<"$row")
    what=${row%% (*}
    [[ $row == *", silent)"* ]] && what+=", silent"
    [[ $row == *"(imported"* ]] && what+=" imported"
    summary "time, $what over ${first%% (*} (--workers 1)" "$(ratio "$us_row" "$us_first")" \
      "($(awk -v a="$us_row" -v b="$us_first" 'BEGIN { printf "%.2f s / %.2f s", a / 1e6, b / 1e6 }'))"
    cpu_row=$(cut -f5 <<<"$row") cpu_first=$(cut -f5 <<<"$first")
    summary "CPU s, $what over ${first%% (*} (--workers 1)" "$(ratio "$cpu_row" "$cpu_first")" \
      "($cpu_row s / $cpu_first s)"
  done
else
  summary "time, more rules over rules/ (--workers 1)" "-" "(BENCH_RULES=0)"
fi
# Peak RSS of the largest worker, as the host reports it; without that line, only GNU
# time's largest process of the run is known, which may be the host.
peaks="default: $(row_field main "trailhound replay default ($CORES)" 7) MiB"
if [[ -n $RULE_COUNTS ]]; then peaks+=", ${last%% (*} (--workers 1): $(cut -f7 <<<"$last") MiB"; fi
if [[ $(row_field main "$W1" 7) != - ]]; then
  summary "peak RSS of a worker (the largest), trailhound --workers 1" "$(row_field main "$W1" 7) MiB" "($peaks)"
else
  summary "peak RSS of a worker (the largest), trailhound --workers 1" "-" \
    "(no 'peak memory' line from this build; GNU time's largest process: $(row_field main "$W1" 3 |
      awk '{ printf "%.1f", $1 / 1024 }') MiB)"
fi

if ((FAILED)); then
  echo
  die "an alert or match count differs from what make-corpus expects (see above)"
fi
