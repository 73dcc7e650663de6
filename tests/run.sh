#!/usr/bin/env bash
# tests/run.sh MODE — the engine behind `make test`, `make sanitize`, `make fuzz`, `make stress`.
#
#   test      compile checks (each header alone and all together; C99 and C++11; gcc and clang;
#             PK_*_STATIC), the doc examples, tests/test_*.c plain + ASan/UBSan + TSan, fuzz corpus
#             replay, benchmark smoke runs, the packaging test. Ends with "total: N passed, N failed".
#   sanitize  tests/test_*.c under ASan+UBSan, TSan and valgrind memcheck.
#   fuzz      tests/fuzz/fuzz_*.c under libFuzzer for FUZZ_SECONDS each.
#   stress    tests/stress_*.c for STRESS_SECONDS each, plain and under TSan.
#
# A tool that is missing is named with its Debian package and skipped; it never fails the run.
set -u
cd "$(dirname "$0")/.."
TOP=$(pwd)
MODE=${1:-test}
CC=${CC:-cc}
BUILD=${BUILD:-build}
mkdir -p "$BUILD"
LOG="$BUILD/logs"
mkdir -p "$LOG"

PASS=0
FAIL=0
FAILED_NAMES=()
WARN="-Wall -Wextra -Wpedantic -Werror"
CSTD="-std=c99 -D_POSIX_C_SOURCE=200809L"
HEADERS=$(ls pk_*.h 2>/dev/null)
TESTS=$(ls tests/test_*.c 2>/dev/null)

have() { command -v "$1" >/dev/null 2>&1; }
ok()   { PASS=$((PASS + 1)); printf '  ok   %s\n' "$1"; }
bad()  { FAIL=$((FAIL + 1)); FAILED_NAMES+=("$1"); printf '  FAIL %s\n' "$1"; }
skip() { printf '  skip %s\n' "$1"; }
section() { printf '\n== %s\n' "$1"; }

# Adds a test program's own "NAME: N passed, N failed" to the totals; a program that crashed,
# hung or printed no summary counts as one failure.
tally_program() { # name logfile exitcode
    local name=$1 log=$2 rc=$3 line p f
    line=$(grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')
        f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
    else
        p=0; f=0
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    PASS=$((PASS + p)); FAIL=$((FAIL + f))
    if [ "$f" -ne 0 ]; then
        FAILED_NAMES+=("$name")
        printf '  FAIL %s (%s passed, %s failed, exit %s) — log: %s\n' "$name" "$p" "$f" "$rc" "$log"
        grep -E 'FAIL|ERROR|WARNING: ThreadSanitizer|runtime error|Sanitizer|watchdog' "$log" | head -n 20 | sed 's/^/       /'
    else
        printf '  ok   %s (%s passed)\n' "$name" "$p"
    fi
}

cc_works() { # compiler flags...: can this compiler build and run a threaded program with these flags?
    local c=$1; shift
    have "${c%% *}" || return 1
    printf '#include <pthread.h>\n#include <stdio.h>\nstatic void *f(void *a){return a;}\nint main(void){pthread_t t; pthread_create(&t,0,f,0); pthread_join(t,0); puts("ok"); return 0;}\n' > "$BUILD/probe.c"
    $c "$@" -pthread "$BUILD/probe.c" -o "$BUILD/probe" >/dev/null 2>&1 && "$BUILD/probe" >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
compile_checks() {
    section "compile: each header alone and all together, C99 and C++11, gcc and clang, -Werror"
    local h H c out src
    local compilers=()
    for c in "gcc -std=c99" "clang -std=c99" "g++ -x c++ -std=c++11" "clang++ -x c++ -std=c++11"; do
        if have "${c%% *}"; then compilers+=("$c"); else skip "${c%% *} not installed (apt-get install ${c%% *})"; fi
    done
    for h in $HEADERS; do
        H=$(echo "${h#pk_}" | sed 's/\.h$//' | tr a-z A-Z)
        for variant in IMPLEMENTATION STATIC; do
            src="$BUILD/compile_${h%.h}_$variant.c"
            if [ $variant = STATIC ]; then
                printf '#define PK_%s_STATIC\n#define PK_%s_IMPLEMENTATION\n#include "%s"\nint main(void){return 0;}\n' "$H" "$H" "$h" > "$src"
            else
                printf '#define PK_%s_IMPLEMENTATION\n#include "%s"\n#include "%s"\nint main(void){return 0;}\n' "$H" "$h" "$h" > "$src"
            fi
            for c in "${compilers[@]}"; do
                out="$LOG/compile_${h%.h}_${variant}_${c%% *}.log"
                if $c -D_POSIX_C_SOURCE=200809L $WARN -pthread -I. -c "$src" -o "$BUILD/compile.o" > "$out" 2>&1; then
                    ok "$h $variant with $c"
                else
                    bad "$h $variant with $c"; head -n 8 "$out" | sed 's/^/       /'
                fi
            done
        done
    done
    # All headers in one program, implementations in one file and declarations in another.
    if [ -n "$HEADERS" ]; then
        src="$BUILD/compile_all_impl.c"; : > "$src"
        for h in $HEADERS; do
            H=$(echo "${h#pk_}" | sed 's/\.h$//' | tr a-z A-Z)
            printf '#define PK_%s_IMPLEMENTATION\n' "$H" >> "$src"
        done
        for h in $HEADERS; do printf '#include "%s"\n' "$h" >> "$src"; done
        src2="$BUILD/compile_all_decl.c"; : > "$src2"
        for h in $HEADERS; do printf '#include "%s"\n' "$h" >> "$src2"; done
        printf 'int main(void){return 0;}\n' >> "$src2"
        for c in "${compilers[@]}"; do
            out="$LOG/compile_all_${c%% *}.log"
            if $c -D_POSIX_C_SOURCE=200809L $WARN -pthread -I. -c "$src" -o "$BUILD/all1.o" > "$out" 2>&1 &&
               $c -D_POSIX_C_SOURCE=200809L $WARN -pthread -I. -c "$src2" -o "$BUILD/all2.o" >> "$out" 2>&1 &&
               ${c%% *} -pthread "$BUILD/all1.o" "$BUILD/all2.o" -o "$BUILD/all" -lm >> "$out" 2>&1; then
                ok "all headers in one program with $c"
            else
                bad "all headers in one program with $c"; head -n 8 "$out" | sed 's/^/       /'
            fi
        done
    fi
}

# ---------------------------------------------------------------------------------------------
doc_examples() {
    section "doc examples: each header's Quick start, compiled as C99, C++11 and C++20 and run"
    local h src out c
    for h in $HEADERS; do
        src="$BUILD/example_${h%.h}.c"
        awk '/^[[:space:]]*--->8---/{p=0} p{print} /^[[:space:]]*---8<---/{p=1}' "$h" > "$src"
        if [ ! -s "$src" ]; then bad "$h has no Quick start example between ---8<--- and --->8---"; continue; fi
        for c in "gcc -std=c99" "g++ -x c++ -std=c++11" "g++ -x c++ -std=c++20"; do
            have "${c%% *}" || continue
            out="$LOG/example_${h%.h}_${c##*=}.log"
            if (cd "$BUILD" && $c -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -pthread -I"$TOP" "example_${h%.h}.c" -o "example_${h%.h}" -lm) > "$out" 2>&1 &&
               (cd "$BUILD" && timeout 60 "./example_${h%.h}") >> "$out" 2>&1; then
                ok "$h example ($c)"
            else
                bad "$h example ($c)"; tail -n 8 "$out" | sed 's/^/       /'
            fi
        done
    done
}

# ---------------------------------------------------------------------------------------------
run_tests() { # variant compiler flags...
    local variant=$1 c=$2; shift 2
    local t name bin out rc
    section "tests: $variant"
    mkdir -p "$BUILD/$variant"
    for t in $TESTS; do
        name=$(basename "$t" .c)
        bin="$BUILD/$variant/$name"
        out="$LOG/${name}_$variant.log"
        if ! $c $CSTD $WARN -g -pthread -I. "$@" "$t" -o "$bin" -lm > "$out" 2>&1; then
            bad "$name ($variant): does not compile"; head -n 12 "$out" | sed 's/^/       /'; continue
        fi
        if [ "$variant" = plain ]; then
            timeout 600 "$bin" >> "$out" 2>&1; rc=$?
        elif [ "$variant" = valgrind ]; then
            # --fair-sched=yes: valgrind runs one thread at a time, and its default lock lets a
            # thread that never blocks (a map owner spinning through busy items) keep it for
            # seconds while threads woken from a sleep wait: test_exec's "maps do not starve
            # tasks" then measured valgrind's scheduler, not pk's (seen: 1 to 5 runs in 10)
            PK_TEST_SLOW=1 PK_TEST_TIMEOUT=1200 timeout 1800 valgrind -q --fair-sched=yes --error-exitcode=99 \
                --leak-check=full --errors-for-leak-kinds=definite "$bin" >> "$out" 2>&1; rc=$?
        else
            PK_TEST_SLOW=1 PK_TEST_TIMEOUT=900 timeout 1200 "$bin" >> "$out" 2>&1; rc=$?
        fi
        tally_program "$name ($variant)" "$out" "$rc"
    done
}

SAN_ASAN="-O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
SAN_TSAN="-O1 -fsanitize=thread"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

sanitized_tests() {
    if cc_works "$CC" $SAN_ASAN; then run_tests asan "$CC" $SAN_ASAN
    else section "tests: asan"; skip "AddressSanitizer not usable with $CC (apt-get install gcc or libclang-rt-14-dev)"; fi
    if cc_works "$CC" $SAN_TSAN; then run_tests tsan "$CC" $SAN_TSAN
    else section "tests: tsan"; skip "ThreadSanitizer not usable with $CC (apt-get install gcc or libclang-rt-14-dev)"; fi
}

# ---------------------------------------------------------------------------------------------
fuzz_replay() {
    section "fuzz corpus and crash replay (regressions)"
    local f name bin out rc dirs
    for f in tests/fuzz/fuzz_*.c; do
        [ -f "$f" ] || { skip "no fuzz targets yet"; return; }
        name=$(basename "$f" .c)
        bin="$BUILD/replay/$name"; mkdir -p "$BUILD/replay"
        out="$LOG/replay_$name.log"
        local flags="-O1 -g"
        cc_works "$CC" $SAN_ASAN && flags="$SAN_ASAN -g"
        if ! $CC $CSTD -Wall -Wextra -pthread -I. $flags tests/fuzz/replay.c "$f" -o "$bin" -lm > "$out" 2>&1; then
            bad "$name replay: does not compile"; head -n 8 "$out" | sed 's/^/       /'; continue
        fi
        dirs=""
        [ -d "tests/fuzz/corpus/$name" ] && dirs="$dirs tests/fuzz/corpus/$name"
        [ -d "tests/fuzz/crashes/$name" ] && dirs="$dirs tests/fuzz/crashes/$name"
        timeout 600 "$bin" $dirs >> "$out" 2>&1; rc=$?
        if [ $rc -eq 0 ]; then ok "$name: $(tail -n 1 "$out")"; else bad "$name replay (exit $rc)"; tail -n 15 "$out" | sed 's/^/       /'; fi
    done
}

# ---------------------------------------------------------------------------------------------
bench_smoke() {
    section "benchmarks and scenarios: build and smoke run (tiny sizes, nothing timed)"
    . bench/peers.sh
    local f name bin out rc
    mkdir -p "$BUILD/bench"
    for f in bench/bench_*.c bench/scenario_*.c; do
        [ -f "$f" ] || continue
        name=$(basename "$f" .c)
        bin="$BUILD/bench/$name"
        out="$LOG/smoke_$name.log"
        if ! $CC -std=gnu99 -O2 -g -Wall -Wextra -pthread -I. -Ibench $PEER_CFLAGS "$f" -o "$bin" $PEER_LIBS -ldl -lm > "$out" 2>&1; then
            bad "$name: does not compile"; head -n 12 "$out" | sed 's/^/       /'; continue
        fi
        BENCH_SMOKE=1 timeout 300 "$bin" >> "$out" 2>&1; rc=$?
        if [ $rc -eq 0 ]; then ok "$name smoke run"; else bad "$name smoke run (exit $rc)"; tail -n 15 "$out" | sed 's/^/       /'; fi
    done
}

# ---------------------------------------------------------------------------------------------
packaging() {
    section "packaging: copied header, git submodule + CMake add_subdirectory, make install + pkg-config"
    local out="$LOG/packaging.log" rc
    bash tests/test_packaging.sh > "$out" 2>&1; rc=$?
    grep -E '^  (ok|skip|FAIL) ' "$out" | sed 's/^  //' | while read -r word rest; do printf '  %-4s %s\n' "$word" "$rest"; done
    PASS=$((PASS + $(grep -c '^  ok ' "$out")))
    FAIL=$((FAIL + $(grep -c '^  FAIL ' "$out")))
    while read -r name; do FAILED_NAMES+=("packaging: $name"); done < <(grep '^  FAIL ' "$out" | sed 's/^  FAIL //')
    if [ $rc -ne 0 ] && ! grep -q '^  FAIL ' "$out"; then bad "packaging test (exit $rc)"; tail -n 15 "$out" | sed 's/^/       /'; fi
}

# ---------------------------------------------------------------------------------------------
fuzz_run() {
    section "fuzz: libFuzzer, ${FUZZ_SECONDS}s per target"
    if ! cc_works clang -fsanitize=address; then skip "clang not installed (apt-get install clang libclang-rt-14-dev)"; return; fi
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n){(void)d;(void)n;return 0;}\n' > "$BUILD/fz.c"
    if ! clang -fsanitize=fuzzer "$BUILD/fz.c" -o "$BUILD/fz" >/dev/null 2>&1; then
        skip "libFuzzer runtime missing (apt-get install libclang-rt-14-dev)"; return
    fi
    local f name bin out work crashes runs
    for f in tests/fuzz/fuzz_*.c; do
        [ -f "$f" ] || continue
        name=$(basename "$f" .c)
        bin="$BUILD/fuzz/$name"; mkdir -p "$BUILD/fuzz"
        out="$LOG/fuzz_$name.log"
        work="$BUILD/fuzz/corpus_$name"; crashes="tests/fuzz/crashes/$name"
        mkdir -p "$work" "$crashes"
        [ -d "tests/fuzz/corpus/$name" ] && cp -n tests/fuzz/corpus/"$name"/* "$work"/ 2>/dev/null
        if ! clang -std=c99 -D_POSIX_C_SOURCE=200809L -g -O1 -pthread -I. -fsanitize=fuzzer,address,undefined \
             -fno-sanitize-recover=all "$f" -o "$bin" -lm > "$out" 2>&1; then
            bad "$name: does not compile"; head -n 8 "$out" | sed 's/^/       /'; continue
        fi
        "$bin" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -artifact_prefix="$crashes/" "$work" >> "$out" 2>&1
        rc=$?
        runs=$(grep -E 'stat::number_of_executed_units' "$out" | tail -n 1 | awk '{print $2}')
        rmdir "$crashes" 2>/dev/null
        if [ $rc -eq 0 ]; then ok "$name: ${runs:-?} executions in ${FUZZ_SECONDS}s, no crash"
        else bad "$name: crash found, input saved under $crashes/ (log $out)"; grep -E 'ERROR|SUMMARY' "$out" | head -n 5 | sed 's/^/       /'; fi
    done
}

stress_run() {
    section "stress: ${STRESS_SECONDS}s per program, plain and TSan"
    local f name bin out rc v flags
    for f in tests/stress_*.c; do
        [ -f "$f" ] || { skip "no stress programs yet"; return; }
        name=$(basename "$f" .c)
        for v in plain tsan; do
            if [ $v = tsan ]; then cc_works "$CC" $SAN_TSAN || { skip "$name tsan: ThreadSanitizer not usable"; continue; }; flags="$SAN_TSAN"; else flags="-O2"; fi
            bin="$BUILD/stress/$name-$v"; mkdir -p "$BUILD/stress"
            out="$LOG/stress_${name}_$v.log"
            if ! $CC $CSTD $WARN -g -pthread -I. $flags "$f" -o "$bin" -lm > "$out" 2>&1; then
                bad "$name ($v): does not compile"; head -n 8 "$out" | sed 's/^/       /'; continue
            fi
            STRESS_SECONDS="$STRESS_SECONDS" PK_TEST_TIMEOUT=$((STRESS_SECONDS * 4 + 120)) timeout $((STRESS_SECONDS * 5 + 180)) "$bin" >> "$out" 2>&1; rc=$?
            tally_program "$name ($v)" "$out" "$rc"
            grep -iE 'operations|ops' "$out" | tail -n 3 | sed 's/^/       /'
        done
    done
}

summary() {
    echo
    if [ ${#FAILED_NAMES[@]} -gt 0 ]; then
        echo "failed:"; printf '  %s\n' "${FAILED_NAMES[@]}"
    fi
    echo "total: $PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
}

case "$MODE" in
test)
    compile_checks
    doc_examples
    run_tests plain "$CC" -O2
    sanitized_tests
    fuzz_replay
    bench_smoke
    packaging
    ;;
sanitize)
    sanitized_tests
    if have valgrind; then run_tests valgrind "$CC" -O1
    else section "tests: valgrind"; skip "valgrind not installed (apt-get install valgrind)"; fi
    ;;
fuzz) fuzz_run ;;
stress) stress_run ;;
*) echo "usage: tests/run.sh test|sanitize|fuzz|stress"; exit 2 ;;
esac
summary
