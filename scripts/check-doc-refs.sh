#!/usr/bin/env bash
# Checks that every section reference in the code resolves to a numbered heading in docs/.
# No cargo, no build: plain grep and awk over the source trees.
#
# What is scanned: *.rs, *.md, *.py, *.sh and *.toml files under src/ sim/ protocol/ tests/
# bench/ fuzz/ (build output in target/ skipped), plus README.md, BENCHMARKS.md and docs/*.md.
#
# Which document a § reference means (the rule, in order):
#   1. the nearest document name before the § on the same line decides: "DOCTOR.md" →
#      docs/doctor.md, "PROTOCOL.md" → docs/protocol.md;
#   2. with no name before it, a reference in a file under src/commands/doctor/ (or in
#      docs/doctor.md itself) means docs/doctor.md;
#   3. every other reference — a bare "§5.6" anywhere else — means docs/protocol.md.
#
# Forms understood: "§5", "§ 5", "§5.6", "§9.4.3"; ranges "§5.1–§5.2", "§8.2–8.3" and
# "§9.4.2–3" (= §9.4.2 and §9.4.3; both ends are checked, not what lies between);
# "§14 item 8" (= §14 and §14.8). A § right after an RFC number ("RFC 1928 §3–5") cites that
# standard and is skipped.
#
# The doctor code also cites checklist items without a §: "DOCTOR.md 3", "DOCTOR.md 4–6",
# "DOCTOR.md 1, 7". Those are checked against docs/doctor.md as well (ranges expanded).
#
# A number N resolves when the document has a markdown heading whose text starts with N,
# optionally followed by a dot: "## 5. WebSocket layer", "### 5.6 Reconnecting", "#### 14.19 …".
#
# Output: one line per unresolved reference, "file:line §N" (or "file:line DOCTOR.md N"),
# and exit status 1; otherwise "all N § references resolve" and exit status 0.
# With --list, every reference found is printed first as "file:line doc N".

set -euo pipefail
export LC_ALL=C

list=0
case "${1:-}" in
    --list) list=1 ;;
    "") ;;
    *) echo "usage: $0 [--list]" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

protocol_doc=docs/protocol.md
doctor_doc=docs/doctor.md
for doc in "$protocol_doc" "$doctor_doc"; do
    [[ -f $doc ]] || { echo "missing $doc" >&2; exit 2; }
done

# The section numbers a document has headings for, one a line.
headings() {
    grep -E '^#{1,6}[[:space:]]+[0-9]+(\.[0-9]+)*\.?([[:space:]]|$)' "$1" \
        | awk '{ n = $2; sub(/\.$/, "", n); print n }'
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
headings "$protocol_doc" >"$tmp/protocol"
headings "$doctor_doc" >"$tmp/doctor"

trees=()
for d in src sim protocol tests bench fuzz; do
    [[ -d $d ]] && trees+=("$d")
done
files=()
for f in README.md BENCHMARKS.md docs/*.md; do
    [[ -f $f ]] && files+=("$f")
done

# Every line that may hold a reference, as "file:line:text".
grep -rnE --exclude-dir=target --exclude-dir=.git \
    --include='*.rs' --include='*.md' --include='*.py' --include='*.sh' --include='*.toml' \
    -e '§' -e 'DOCTOR\.md [0-9]' \
    ${trees[@]+"${trees[@]}"} ${files[@]+"${files[@]}"} >"$tmp/lines" || true

awk -v protocol_list="$tmp/protocol" -v doctor_list="$tmp/doctor" -v list="$list" '
function last_index(s, t,    i, p) {
    p = 0
    while ((i = index(s, t)) > 0) { p += i; s = substr(s, i + 1) }
    return p
}
# Which document a reference at text position pos means (see the rule above).
function doc_for(text, pos, doctor_file,    before, d, p) {
    before = substr(text, 1, pos - 1)
    d = last_index(before, "DOCTOR.md")
    p = last_index(before, "PROTOCOL.md")
    if (d > p) return "doctor"
    if (p > d) return "protocol"
    return doctor_file ? "doctor" : "protocol"
}
function check(doc, num, where, label) {
    checked[label]++
    if (list) print where " " doc " " num
    if (!((doc, num) in have)) {
        print where " " (label == "section" ? "§" : "DOCTOR.md ") num
        bad++
    }
}
BEGIN {
    while ((getline n < protocol_list) > 0) have["protocol", n] = 1
    while ((getline n < doctor_list) > 0) have["doctor", n] = 1
    bad = 0; checked["section"] = 0; checked["item"] = 0
}
{
    # "file:line:text"; file names here contain no colon.
    c1 = index($0, ":"); file = substr($0, 1, c1 - 1)
    rest = substr($0, c1 + 1)
    c2 = index(rest, ":"); line = substr(rest, 1, c2 - 1)
    text = substr(rest, c2 + 1)
    where = file ":" line
    doctor_file = (file ~ /^src\/commands\/doctor\// || file == "docs/doctor.md")

    # § references.
    s = text; off = 0
    while (match(s, /§ ?[0-9]+(\.[0-9]+)*/)) {
        pos = off + RSTART
        m = substr(s, RSTART, RLENGTH)
        after = substr(s, RSTART + RLENGTH)
        off += RSTART + RLENGTH - 1
        s = after
        num = m; sub(/^§ ?/, "", num)
        # Another standard section ("RFC 1928 §3"): not ours.
        if (substr(text, 1, pos - 1) ~ /RFC ?[0-9]+ *$/) {
            if (match(s, /^(–|-)[0-9]+(\.[0-9]+)*/)) { off += RLENGTH; s = substr(s, RLENGTH + 1) }
            continue
        }
        doc = doc_for(text, pos, doctor_file)
        check(doc, num, where, "section")
        # "§9.4.2–3" / "§8.2–8.3": the other end of a range without its own §.
        if (match(s, /^(–|-)[0-9]+(\.[0-9]+)*/)) {
            tail = substr(s, RSTART, RLENGTH); sub(/^(–|-)/, "", tail)
            nn = split(num, a, "."); nt = split(tail, b, ".")
            if (nt < nn) {
                end = ""
                for (i = 1; i <= nn - nt; i++) end = end a[i] "."
                end = end tail
            } else end = tail
            check(doc, end, where, "section")
            off += RLENGTH; s = substr(s, RLENGTH + 1)
        }
        # "§14 item 8".
        if (match(s, /^ items? [0-9]+/)) {
            item = substr(s, RSTART, RLENGTH); sub(/^ items? /, "", item)
            check(doc, num "." item, where, "section")
        }
    }

    # Checklist items cited without a §: "DOCTOR.md 3", "DOCTOR.md 4–6", "DOCTOR.md 1, 7".
    s = text
    while (match(s, /DOCTOR\.md [0-9]+((, ?| ?(–|-) ?)[0-9]+)*/)) {
        items = substr(s, RSTART + 10, RLENGTH - 10)
        s = substr(s, RSTART + RLENGTH)
        gsub(/ /, "", items)
        gsub(/–/, "-", items)
        n = split(items, parts, ",")
        for (i = 1; i <= n; i++) {
            if (split(parts[i], r, "-") == 2) {
                for (k = r[1] + 0; k <= r[2] + 0; k++) check("doctor", k, where, "item")
            } else check("doctor", parts[i], where, "item")
        }
    }
}
END {
    if (bad > 0) {
        printf "%d unresolved of %d § references and %d DOCTOR.md item references\n", \
            bad, checked["section"], checked["item"] > "/dev/stderr"
        exit 1
    }
    printf "all %d § references resolve\n", checked["section"]
    if (checked["item"] > 0)
        printf "all %d DOCTOR.md item references resolve\n", checked["item"]
}
' "$tmp/lines"
