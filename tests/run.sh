#!/usr/bin/env bash
# Runs every test of the project and ends with one line: "N passed, N failed".
#
#   1. luacheck, a line per Lua file
#   2. C unit tests (built with ASan+UBSan), TAP
#      and the fuzz harnesses: seed corpus and fixed-seed mutations
#      (FUZZ_ITERATIONS, default 20000 each; tests/fuzz/README.md), TAP
#   3. busted specs: Lua units and the binary end to end, TAP
#   4. the end-to-end specs again, driving the ASan+UBSan build
#   5. a replay of the examples and the Stratus data under valgrind (the bundled rules, then
#      the stateful examples)
# 2 to 4 run at once (3 and 4 in two halves each) while 1 runs, then 5. Each line says how
# long its part took; exit status 0 only when nothing failed.
set -u
cd "$(dirname "$0")/.."

passed=0
failed=0
failures=
log=build/test-logs
mkdir -p "$log"

# Count TAP lines of a run's output file; show failures.
tap() {
  local name=$1 file=$2 rc=$3 secs=$4
  local ok notok
  ok=$(grep -cE '^ok ' "$file")
  notok=$(grep -cE '^not ok ' "$file")
  if [ "$rc" -ne 0 ] && [ "$notok" -eq 0 ]; then notok=1; fi  # crashed or errored outside a test
  passed=$((passed + ok))
  failed=$((failed + notok))
  printf '%-46s %5d passed, %d failed  (%d s)\n' "$name" "$ok" "$notok" "$secs"
  if [ "$notok" -ne 0 ] || [ "$rc" -ne 0 ]; then
    # Each failure with the diagnostics under it; a run that failed outside any test shows
    # its tail instead. The names are listed again above the last line, where a CI log's
    # tail shows them.
    if grep -qE '^not ok ' "$file"; then
      awk '/^not ok /{show=1; n=0} /^ok /{show=0} show && n++ < 60' "$file" | sed 's/^/    /'
      failures+=$(grep -E '^not ok ' "$file" | sed "s|^|  $name: |")$'\n'
    else
      tail -n 60 "$file" | sed 's/^/    /'
      failures+="  $name: exited $rc outside any test (see $file)"$'\n'
    fi
  fi
}

# Every part but luacheck and valgrind runs at once, in the background: the end-to-end specs
# mostly wait on real processes, files, sockets and clocks (run one after another, the suite
# kept two cores less than half busy), so the suite stays within ten minutes on two cores.
# Each job writes its TAP to $log/KEY.tap and "EXIT-STATUS SECONDS" to $log/KEY.rc; the
# results are printed in a fixed order once all are done.
busted() { lua5.4 /usr/bin/busted -o TAP "$@"; }
job() {
  local key=$1
  shift
  ( s=$SECONDS; "$@" > "$log/$key.tap" 2>&1; echo "$? $((SECONDS - s))" > "$log/$key.rc" ) &
}
result() {
  local name=$1 key=$2 rc secs
  read -r rc secs < "$log/$key.rc" || { rc=1; secs=0; }
  tap "$name" "$log/$key.tap" "$rc" "$secs"
}

# The specs in two halves (the tailing, sandbox and authoring specs; the rest), each run
# against the optimised build (3) and against the sanitizer build (4).
half0=$(ls tests/e2e_tail_spec.lua tests/e2e_sandbox_spec.lua tests/e2e_authoring_spec.lua 2>/dev/null)
half1=$(ls tests/*_spec.lua | grep -v -e e2e_tail_spec -e e2e_sandbox_spec -e e2e_authoring_spec)
e2e1=$(echo "$half1" | grep '/e2e_')
san() {
  TRAILHOUND_BIN=build/asan/trailhound ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 busted "$@"
}
# shellcheck disable=SC2086
job asan-0 san $half0
# shellcheck disable=SC2086
job asan-1 san $e2e1
# shellcheck disable=SC2086
job busted-0 env TRAILHOUND_BIN=build/trailhound lua5.4 /usr/bin/busted -o TAP $half0
# shellcheck disable=SC2086
job busted-1 env TRAILHOUND_BIN=build/trailhound lua5.4 /usr/bin/busted -o TAP $half1

# 2. C unit tests, then the fuzz harnesses under driver.c (a short run with a fixed seed),
# one after another in one job.
c_tests=$(for t in build/tests/*; do [ -f "$t" ] && [ -x "$t" ] && echo "$t"; done)
fuzzers=$(for t in build/fuzz/*; do [ -f "$t" ] && [ -x "$t" ] && echo "$t"; done)
(
  for t in $c_tests; do
    s=$SECONDS; "$t" > "$log/c-$(basename "$t").tap" 2>&1; echo "$? $((SECONDS - s))" > "$log/c-$(basename "$t").rc"
  done
  for t in $fuzzers; do
    s=$SECONDS; "$t" > "$log/fuzz-$(basename "$t").tap" 2>&1; echo "$? $((SECONDS - s))" > "$log/fuzz-$(basename "$t").rc"
  done
) &

# 1. luacheck: one run, a TAP line per file (a line per warning of a file that has any)
luafiles=$(ls scripts/*.lua scripts/commands/*.lua rules/*.lua tests/*.lua examples/*.lua examples/rules/*.lua examples/stateful/*.lua tests/bench/*.lua 2>/dev/null)
s=$SECONDS
# shellcheck disable=SC2086
luacheck --formatter TAP $luafiles > "$log/luacheck.tap" 2>&1
tap "luacheck" "$log/luacheck.tap" 0 $((SECONDS - s))

wait
for t in $c_tests; do result "C: $(basename "$t")" "c-$(basename "$t")"; done
for t in $fuzzers; do result "fuzz: $(basename "$t")" "fuzz-$(basename "$t")"; done
result "busted, units and end to end (1 of 2)" busted-0
result "busted, units and end to end (2 of 2)" busted-1
result "busted end to end, ASan+UBSan build (1 of 2)" asan-0
result "busted end to end, ASan+UBSan build (2 of 2)" asan-1

# 5. valgrind
s=$SECONDS
: > "$log/valgrind.tap"
if valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
     build/trailhound replay examples/cloudtrail/*.ndjson examples/ecs/*.ndjson examples/s3/*.json.gz \
     tests/fixtures/stratus-red-team/*.json > /dev/null 2> "$log/valgrind.err" &&
   valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
     build/trailhound replay --rules examples/stateful tests/fixtures/stratus-red-team/*.json \
     > /dev/null 2>> "$log/valgrind.err"; then
  echo "ok - valgrind replay: no errors, no leaks" >> "$log/valgrind.tap"
  tap "valgrind replay" "$log/valgrind.tap" 0 $((SECONDS - s))
else
  { echo "not ok - valgrind replay"; cat "$log/valgrind.err"; } >> "$log/valgrind.tap"
  tap "valgrind replay" "$log/valgrind.tap" 1 $((SECONDS - s))
fi

echo
echo "all in $SECONDS s"
if [ -n "$failures" ]; then printf 'failed:\n%s\n' "$failures"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
