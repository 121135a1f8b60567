#!/bin/sh
# The `mxwarden scan` and `mxwarden dump` commands as a user runs them: golden
# reports for the shipped examples, exit codes, one-line errors for unreadable
# inputs (the other inputs are still scanned), JSON output, and the peak
# memory of scanning a 100 MB message (must stay under 4x its size).
. "${MXW_SOURCE_DIR:?}/tests/support/cli.sh"

# Golden reports: the examples' reports are reviewed text; any change must be deliberate.
for f in "$top"/examples/*.eml; do
    name=$(basename "$f" .eml)
    "$bin" scan "$f" >"$work/$name.txt" || fail "scan $name exited $?"
    diff -u "$top/tests/data/golden/$name.txt" "$work/$name.txt" || fail "report of $name changed"
done
echo "ok golden reports"

# Several inputs, one unreadable: error line naming it, exit 3, others still scanned.
set +e
"$bin" scan "$top/examples/ham-release-notes.eml" "$work/missing.eml" \
    "$top/examples/spam-hidden-text.eml" >"$work/out" 2>"$work/err"
rc=$?
set -e
[ $rc -eq 3 ] || fail "exit status $rc, want 3"
[ "$(wc -l <"$work/err")" -eq 1 ] || fail "want one error line, got: $(cat "$work/err")"
grep -q "missing.eml: No such file or directory" "$work/err" || fail "error does not name the file"
[ "$(grep -c '^Total:' "$work/out")" -eq 2 ] || fail "the readable files were not both scanned"
grep -q "^File: .*spam-hidden-text.eml" "$work/out" || fail "no File: line for several inputs"
echo "ok unreadable input"

: >"$work/empty.eml"
set +e
"$bin" scan "$work/empty.eml" "$work" >/dev/null 2>"$work/err"; rc=$?
set -e
[ $rc -eq 3 ] || fail "empty/directory: exit $rc"
grep -q "empty.eml: empty, not a mail message" "$work/err" || fail "empty file error"
grep -q ": is a directory" "$work/err" || fail "directory error"
echo "ok empty file and directory"

# Standard input and JSON, one object per line.
"$bin" scan --json --from bounce@example.com --rcpt a@example.net --ip 192.0.2.1 --helo h \
    - <"$top/examples/spam-hidden-text.eml" >"$work/json"
grep -q '^{"file":"-","score":[-0-9.]*,"action":"[a-z]*",' "$work/json" || fail "json shape"
grep -q '"name":"ZERO_FONT"' "$work/json" || fail "json symbols"
echo "ok json from stdin"

# Usage errors exit 2.
set +e
"$bin" scan >/dev/null 2>&1; rc1=$?
"$bin" frobnicate >/dev/null 2>&1; rc2=$?
set -e
[ $rc1 -eq 2 ] && [ $rc2 -eq 2 ] || fail "usage exit codes $rc1 $rc2"
echo "ok usage errors"

# dump shows structure, text, URLs and features.
"$bin" dump "$top/examples/spam-hidden-text.eml" >"$work/dump"
for want in "== parts" "== urls" "link_mismatch" "== features" "-- hidden"; do
    grep -q -- "$want" "$work/dump" || fail "dump lacks '$want'"
done
echo "ok dump"

# 100 MB: a text part and a base64 attachment, both far beyond the text cap.
big="$work/big.eml"
{
    printf 'From: a@example.com\nSubject: huge\nContent-Type: multipart/mixed; boundary=BIG\n\n'
    printf -- '--BIG\nContent-Type: text/plain\n\n'
    yes "a line of ordinary text to fill fifty megabytes of message body" | head -c 52428800
    printf -- '\n--BIG\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n'
    yes "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB" |
        head -c 52428800
    printf -- '\n--BIG--\n'
} >"$big"
size=$(wc -c <"$big")
/usr/bin/time -f '%M' -o "$work/rss" "$bin" scan "$big" >"$work/out" || fail "scan of 100 MB failed"
peak_kb=$(tail -1 "$work/rss")
limit_kb=$((size * 4 / 1024))
echo "100 MB message: size_bytes=$size peak_rss_kb=$peak_kb limit_kb=$limit_kb" \
    "ratio=$(awk "BEGIN{printf \"%.2f\", $peak_kb*1024/$size}")"
[ "$peak_kb" -lt "$limit_kb" ] || fail "peak memory $peak_kb KB over 4x the message size"
grep -q '^Total:' "$work/out" || fail "no report for the 100 MB message"
echo "ok 100 MB message"
