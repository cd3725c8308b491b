#!/usr/bin/env bash
# Runs every test of the project and ends with one line: "N passed, N failed".
#
#   1. luacheck, a line per Lua file
#   2. C unit tests (built with ASan+UBSan), TAP
#      and the fuzz harnesses: seed corpus and fixed-seed mutations
#      (FUZZ_ITERATIONS, default 20000 each; tests/fuzz/README.md), TAP
#   3. busted specs: Lua units and the binary end to end, TAP
#   4. the end-to-end specs again, driving the ASan+UBSan build: started first, it runs
#      beside 1 to 3
#   5. a replay of the examples and the Stratus data under valgrind (the bundled rules, then
#      the stateful examples)
# Each line says how long its part took; exit status 0 only when nothing failed.
set -u
cd "$(dirname "$0")/.."

passed=0
failed=0
failures=
log=build/test-logs
mkdir -p "$log"

# Count TAP lines of a run's output file; show failures.
tap() {
  local name=$1 file=$2 rc=$3
  local ok notok
  ok=$(grep -cE '^ok ' "$file")
  notok=$(grep -cE '^not ok ' "$file")
  if [ "$rc" -ne 0 ] && [ "$notok" -eq 0 ]; then notok=1; fi  # crashed or errored outside a test
  passed=$((passed + ok))
  failed=$((failed + notok))
  printf '%-44s %5d passed, %d failed  (%d s)\n' "$name" "$ok" "$notok" $((SECONDS - start))
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

# 4, started first: the end-to-end specs against the sanitizer build. They mostly wait on
# real processes, files and sockets, so they run beside everything else (the C tests and
# fuzz runs, then the optimised build's specs) and the suite stays within ten minutes on
# two cores.
busted() { lua5.4 /usr/bin/busted -o TAP "$@"; }
e2e=$(ls tests/e2e_*_spec.lua 2>/dev/null)
asan_pid=
if [ -n "$e2e" ]; then
  asan_start=$SECONDS
  TRAILHOUND_BIN=build/asan/trailhound ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 busted $e2e > "$log/busted-asan.tap" 2>&1 &
  asan_pid=$!
fi

# 1. luacheck: one run, a TAP line per file (a line per warning of a file that has any)
luafiles=$(ls scripts/*.lua scripts/commands/*.lua rules/*.lua tests/*.lua examples/*.lua examples/rules/*.lua examples/stateful/*.lua tests/bench/*.lua 2>/dev/null)
start=$SECONDS
# shellcheck disable=SC2086
luacheck --formatter TAP $luafiles > "$log/luacheck.tap" 2>&1
tap "luacheck" "$log/luacheck.tap" 0

# 2. C unit tests
for t in build/tests/*; do
  [ -x "$t" ] || continue
  start=$SECONDS
  "$t" > "$log/c-$(basename "$t").tap" 2>&1
  tap "C: $(basename "$t")" "$log/c-$(basename "$t").tap" $?
done

# 2b. fuzz harnesses under driver.c: a short run with a fixed seed
for t in build/fuzz/*; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  start=$SECONDS
  "$t" > "$log/fuzz-$(basename "$t").tap" 2>&1
  tap "fuzz: $(basename "$t")" "$log/fuzz-$(basename "$t").tap" $?
done

# 3. busted: all specs against the optimised build
start=$SECONDS
TRAILHOUND_BIN=build/trailhound busted > "$log/busted.tap" 2>&1
tap "busted (units and end to end)" "$log/busted.tap" $?
if [ -n "$asan_pid" ]; then
  start=$asan_start
  wait "$asan_pid"
  tap "busted end to end, ASan+UBSan build" "$log/busted-asan.tap" $?
fi

# 5. valgrind
start=$SECONDS
: > "$log/valgrind.tap"
if valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
     build/trailhound replay examples/cloudtrail/*.ndjson examples/ecs/*.ndjson examples/s3/*.json.gz \
     tests/fixtures/stratus-red-team/*.json > /dev/null 2> "$log/valgrind.err" &&
   valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
     build/trailhound replay --rules examples/stateful tests/fixtures/stratus-red-team/*.json \
     > /dev/null 2>> "$log/valgrind.err"; then
  echo "ok - valgrind replay: no errors, no leaks" >> "$log/valgrind.tap"
  tap "valgrind replay" "$log/valgrind.tap" 0
else
  { echo "not ok - valgrind replay"; cat "$log/valgrind.err"; } >> "$log/valgrind.tap"
  tap "valgrind replay" "$log/valgrind.tap" 1
fi

echo
echo "all in $SECONDS s"
if [ -n "$failures" ]; then printf 'failed:\n%s\n' "$failures"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
