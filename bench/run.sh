#!/usr/bin/env bash
# bench/run.sh — the engine behind `make bench` (QUICK=1 for the one-minute version).
#
# Builds every bench/bench_*.c and bench/scenario_*.c, runs them one after another (never two at
# once: the machine is small and the figures would lie), collects the lines they print through
# bench_util.h (@result, @pct, @note), times whole programs with hyperfine where a scenario offers
# a sequential and a pk mode, and writes
#   bench/results.md    the table, with machine, compiler and date at the top
#   bench/results.json  the same, for tools
#   bench/results.svg   the chart README.md shows
# A peer that is not installed is named with its package; nothing fails for a missing peer.
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc}
BUILD=${BUILD:-build}
QUICK=${QUICK:-}
OUT="$BUILD/bench"
mkdir -p "$OUT"
. bench/peers.sh
if [ -n "$QUICK" ] && [ "$QUICK" != 0 ]; then export BENCH_QUICK=1; MODE="quick"; else unset BENCH_QUICK; MODE="full"; fi

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')
cores=$(nproc 2>/dev/null || echo '?')
ccver=$($CC --version 2>/dev/null | head -n 1)
when=$(date -u '+%Y-%m-%d %H:%M UTC')
echo "pk benchmarks ($MODE) — $when"
echo "machine: ${cpu:-unknown CPU}, $cores cores; compiler: $ccver"
if [ -n "$PEER_MISSING" ]; then
    echo "peers not installed (their comparisons are skipped):"
    printf '%s' "$PEER_MISSING" | sed 's/^/  /'
fi

ALL="$OUT/all.txt"
: > "$ALL"
for f in bench/bench_*.c bench/scenario_*.c; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .c)
    bin="$OUT/$name"
    if ! $CC -std=gnu99 -O2 -g -Wall -Wextra -pthread -I. -Ibench $PEER_CFLAGS "$f" -o "$bin" $PEER_LIBS -ldl -lm 2> "$OUT/$name.build.log"; then
        echo "!! $name does not compile; see $OUT/$name.build.log"
        printf '@note\t%s\t%s\n' "$name" "does not compile" >> "$ALL"
        continue
    fi
    echo
    echo "== $name"
    start=$(date +%s)
    "$bin" 2>&1 | tee "$OUT/$name.out" | grep -v '^@'
    echo "   ($(( $(date +%s) - start )) s)"
    grep '^@' "$OUT/$name.out" >> "$ALL"
done

# Whole-program comparisons: the same scenario run sequentially and with pk, timed by hyperfine.
hf_pairs=""
for s in analyze batch; do
    [ -x "$OUT/scenario_$s" ] && hf_pairs="$hf_pairs $s"
done
if [ -n "$hf_pairs" ]; then
    echo
    echo "== whole programs (hyperfine)"
    for s in $hf_pairs; do
        bin="$OUT/scenario_$s"
        if command -v hyperfine >/dev/null 2>&1; then
            runs=5; [ "$MODE" = quick ] && runs=2
            hyperfine -N --warmup 1 --runs $runs --export-json "$OUT/hf_$s.json" --export-markdown "$OUT/hf_$s.md" \
                -n sequential "$bin --only sequential" -n pk "$bin --only pk" > "$OUT/hf_$s.log" 2>&1
            if [ -s "$OUT/hf_$s.json" ]; then
                # mean seconds of each command, in the order given
                means=$(grep -o '"mean": [0-9.e+-]*' "$OUT/hf_$s.json" | awk '{print $2}')
                seq_s=$(echo "$means" | sed -n 1p); pk_s=$(echo "$means" | sed -n 2p)
                cat "$OUT/hf_$s.md"
                awk -v s="$s" -v a="$pk_s" -v b="$seq_s" 'BEGIN { printf "@result\twhole\tscenario_%s: whole program (hyperfine mean)\t%.6g\tsequential\t%.6g\tms\t%.4f\t-\t-\n", s, a*1000, b*1000, a/b }' >> "$ALL"
            else
                echo "hyperfine failed for scenario_$s; see $OUT/hf_$s.log"
            fi
        else
            echo "hyperfine not installed (apt-get install hyperfine): timing scenario_$s by itself"
            t0=$(date +%s%N); "$bin" --only sequential >/dev/null 2>&1; t1=$(date +%s%N); "$bin" --only pk >/dev/null 2>&1; t2=$(date +%s%N)
            awk -v s="$s" -v a="$(( (t2 - t1) / 1000 ))" -v b="$(( (t1 - t0) / 1000 ))" 'BEGIN { printf "@result\twhole\tscenario_%s: whole program (one run, self-timed)\t%.6g\tsequential\t%.6g\tms\t%.4f\t-\t-\n", s, a/1000, b/1000, a/b }' >> "$ALL"
        fi
    done
fi

# ---- results.md ----------------------------------------------------------------------------
MD=bench/results.md
{
    echo "# pk benchmark results"
    echo
    echo "- date: $when ($MODE run: \`make bench${QUICK:+ QUICK=1}\`)"
    echo "- machine: ${cpu:-unknown CPU}, $cores cores"
    echo "- compiler: $ccver"
    echo
    echo "ratio = pk / peer: below 1 means pk takes less (for times), above 1 means pk does more (for rates and speed-ups, as the unit says)."
    echo
    echo "| group | measure | pk | peer | peer's figure | unit | ratio | target | met |"
    echo "|---|---|---:|---|---:|---|---:|---|---|"
    awk -F'\t' '$1=="@result" { printf "| %s | %s | %s | %s | %s | %s | %.3f | %s | %s |\n", $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$ALL"
    if grep -q '^@claim' "$ALL"; then
        echo
        echo "## The seeds' claims"
        echo
        echo "| scenario | claim | claimed | measured | unit | measured / claimed |"
        echo "|---|---|---:|---:|---|---:|"
        awk -F'\t' '$1=="@claim" { printf "| %s | %s | %s | %s | %s | %.2f |\n", $2, $3, $4, $5, $6, ($4 != 0 ? $5 / $4 : 0) }' "$ALL"
    fi
    if grep -q '^@pct' "$ALL"; then
        echo
        echo "## Latency percentiles (from pk_prof)"
        echo
        echo "| scenario | series | p50 | p90 | p99 | p99.9 | unit |"
        echo "|---|---|---:|---:|---:|---:|---|"
        awk -F'\t' '$1=="@pct" { printf "| %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7, $8 }' "$ALL"
    fi
    if grep -q '^@note' "$ALL" || [ -n "$PEER_MISSING" ]; then
        echo
        echo "## Notes"
        echo
        awk -F'\t' '$1=="@note" { printf "- %s: %s\n", $2, $3 }' "$ALL"
        printf '%s' "$PEER_MISSING" | sed 's/^/- not installed: /'
    fi
} > "$MD"

# ---- results.json --------------------------------------------------------------------------
awk -F'\t' -v when="$when" -v cpu="${cpu:-unknown}" -v cores="$cores" -v cc="$ccver" -v mode="$MODE" '
function q(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }
function num(s) { return (s ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/) ? s : "null" }
BEGIN { printf "{\n  \"date\": %s,\n  \"mode\": %s,\n  \"machine\": {\"cpu\": %s, \"cores\": %s, \"compiler\": %s},\n", q(when), q(mode), q(cpu), num(cores), q(cc); nr = 0; np = 0; nn = 0; nc = 0 }
$1=="@result" { r[nr++] = sprintf("    {\"group\": %s, \"measure\": %s, \"pk\": %s, \"peer\": %s, \"peer_value\": %s, \"unit\": %s, \"ratio\": %s, \"target\": %s, \"met\": %s}", q($2), q($3), num($4), q($5), num($6), q($7), num($8), q($9), q($10)) }
$1=="@pct" { p[np++] = sprintf("    {\"scenario\": %s, \"series\": %s, \"p50\": %s, \"p90\": %s, \"p99\": %s, \"p999\": %s, \"unit\": %s}", q($2), q($3), num($4), num($5), num($6), num($7), q($8)) }
$1=="@claim" { c[nc++] = sprintf("    {\"scenario\": %s, \"claim\": %s, \"claimed\": %s, \"measured\": %s, \"unit\": %s}", q($2), q($3), num($4), num($5), q($6)) }
$1=="@note" { n[nn++] = sprintf("    {\"group\": %s, \"note\": %s}", q($2), q($3)) }
END {
  printf "  \"results\": [\n"; for (i = 0; i < nr; i++) printf "%s%s\n", r[i], i < nr - 1 ? "," : ""; printf "  ],\n"
  printf "  \"percentiles\": [\n"; for (i = 0; i < np; i++) printf "%s%s\n", p[i], i < np - 1 ? "," : ""; printf "  ],\n"
  printf "  \"claims\": [\n"; for (i = 0; i < nc; i++) printf "%s%s\n", c[i], i < nc - 1 ? "," : ""; printf "  ],\n"
  printf "  \"notes\": [\n"; for (i = 0; i < nn; i++) printf "%s%s\n", n[i], i < nn - 1 ? "," : ""; printf "  ]\n}\n"
}' "$ALL" > bench/results.json

# ---- results.svg ---------------------------------------------------------------------------
bash bench/chart.sh "$ALL" "$when" > bench/results.svg

echo
echo "== summary (pk / peer; target met?)"
awk -F'\t' '$1=="@result" { printf "  %-8s %-52s ratio %7.3f  target %-7s %s\n", $2, substr($3, 1, 52), $8, $9, $10 }' "$ALL"
met=$(awk -F'\t' '$1=="@result" && $10=="yes"' "$ALL" | wc -l)
missed=$(awk -F'\t' '$1=="@result" && $10=="no"' "$ALL" | wc -l)
echo "targets: $met met, $missed missed"
echo "wrote bench/results.md, bench/results.json, bench/results.svg"
