#!/bin/sh
# bench/table.sh GROUP... — prints the rows of bench/results.md for those groups as a Markdown table
# (how README.md's tables are made from the last `make bench`). RESULTS=path overrides the input.
RESULTS=${RESULTS:-bench/results.md}
[ -f "$RESULTS" ] || { echo "no $RESULTS: run make bench first" >&2; exit 1; }
awk -F'|' -v groups=" $* " '
function t(s) { gsub(/^ +| +$/, "", s); return s }
function num(s,   v) { v = s + 0; if (s !~ /^-?[0-9.e+]+$/) return s;
    if (v >= 1000) return sprintf("%.0f", v); if (v >= 100) return sprintf("%.1f", v);
    if (v >= 1) return sprintf("%.2f", v); return sprintf("%.3g", v) }
/^## / { intable = ($0 ~ /^## pk benchmark results/ || intable) && $0 !~ /^## The seeds/ && $0 !~ /^## Latency/ && $0 !~ /^## Notes/ ; next }
/^\| group \|/ { intable = 1; hdr = 1; next }
/^\|---/ { next }
intable && /^\|/ {
    g = t($2); if (index(groups, " " g " ") == 0) next
    if (!shown) { print "| measure | pk | peer | peer figure | unit | pk / peer | target | met |"; print "|---|---:|---|---:|---|---:|---|---|"; shown = 1 }
    printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", t($3), num(t($4)), t($5), num(t($6)), t($7), t($8), t($9), t($10)
}
/^$/ { if (shown) intable = 0 }
' "$RESULTS"
