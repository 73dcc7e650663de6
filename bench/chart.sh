#!/usr/bin/env bash
# bench/chart.sh RESULTS-FILE DATE > results.svg — draws the benchmark results as an SVG, with no
# plotting dependency: awk writes the markup.
#   Part 1: one row per comparison, pk's bar (blue) beside the peer's (grey), both scaled to the
#           larger of the two, with the figures and the ratio written out.
#   Part 2: latency percentiles of the scenarios (p50, p90, p99 per series), on a log scale.
set -u
in=$1
when=${2:-}
awk -F'\t' -v when="$when" '
function esc(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); return s }
function fmt(v) { return v >= 100 ? sprintf("%.0f", v) : v >= 10 ? sprintf("%.1f", v) : sprintf("%.3g", v) }
function log10(x) { return log(x) / log(10) }
BEGIN { n = 0; np = 0 }
$1 == "@result" && $6 + 0 > 0 { g[n] = $2; m[n] = $3; pk[n] = $4 + 0; peer[n] = $5; pv[n] = $6 + 0; u[n] = $7; r[n] = $8; met[n] = $10; n++ }
$1 == "@pct" { ps[np] = $2 " / " $3; p50[np] = $4 + 0; p90[np] = $5 + 0; p99[np] = $6 + 0; pu[np] = $8; np++ }
END {
    W = 1000; L = 430; BW = W - L - 150; rowh = 34
    h1 = 60 + n * rowh
    h2 = np ? 70 + np * 46 : 0
    H = h1 + h2 + 30
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
    printf "<text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">pk against its peers (shorter bar = less time; see unit)</text>\n"
    printf "<text x=\"10\" y=\"40\" fill=\"#555\">%s · blue: pk · grey: peer · ratio = pk / peer</text>\n", esc(when)
    for (i = 0; i < n; i++) {
        y = 56 + i * rowh
        mx = pk[i] > pv[i] ? pk[i] : pv[i]; if (mx <= 0) mx = 1
        label = g[i] ": " m[i]; if (length(label) > 68) label = substr(label, 1, 66) ".."
        printf "<text x=\"10\" y=\"%d\">%s</text>\n", y + 13, esc(label)
        printf "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"12\" fill=\"#2b6cb0\"/>\n", L, y + 2, BW * pk[i] / mx
        printf "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"12\" fill=\"#a0aec0\"/>\n", L, y + 15, BW * pv[i] / mx
        printf "<text x=\"%.1f\" y=\"%d\" font-size=\"10\">pk %s %s</text>\n", L + BW * pk[i] / mx + 4, y + 12, fmt(pk[i]), esc(u[i])
        printf "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" fill=\"#444\">%s %s</text>\n", L + BW * pv[i] / mx + 4, y + 25, esc(peer[i]), fmt(pv[i])
        col = met[i] == "yes" ? "#2f855a" : met[i] == "no" ? "#c53030" : "#333"
        printf "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"%s\" text-anchor=\"end\">%.3gx</text>\n", W - 8, y + 18, col, r[i]
    }
    if (np) {
        y0 = h1 + 20
        printf "<text x=\"10\" y=\"%d\" font-size=\"16\" font-weight=\"bold\">Scenario latency percentiles (log scale)</text>\n", y0
        printf "<text x=\"10\" y=\"%d\" fill=\"#555\">bars: p50 (dark), p90, p99 (light)</text>\n", y0 + 18
        lo = 1e300; hi = 0
        for (i = 0; i < np; i++) { if (p50[i] > 0 && p50[i] < lo) lo = p50[i]; if (p99[i] > hi) hi = p99[i] }
        if (lo >= hi) { lo = hi / 10 }
        if (lo <= 0) lo = 1e-3
        span = log10(hi) - log10(lo) + 1
        for (i = 0; i < np; i++) {
            y = y0 + 30 + i * 46
            label = ps[i]; if (length(label) > 68) label = substr(label, 1, 66) ".."
            printf "<text x=\"10\" y=\"%d\">%s</text>\n", y + 20, esc(label)
            split(p50[i] " " p90[i] " " p99[i], v, " "); split("#1a365d #3182ce #90cdf4", c, " "); split("p50 p90 p99", nm, " ")
            for (k = 1; k <= 3; k++) {
                w = v[k] > 0 ? BW * (log10(v[k]) - log10(lo) + 0.5) / span : 0; if (w < 1) w = 1
                printf "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"12\" fill=\"%s\"/>\n", L, y + (k - 1) * 13, w, c[k]
                printf "<text x=\"%.1f\" y=\"%d\" font-size=\"10\">%s %s %s</text>\n", L + w + 4, y + (k - 1) * 13 + 10, nm[k], fmt(v[k]), esc(pu[i])
            }
        }
    }
    printf "</svg>\n"
}' "$in"
