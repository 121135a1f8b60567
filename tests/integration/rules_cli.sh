#!/bin/sh
# `mxwarden rules check DIR`: counts of what loads and compiles, and the
# reasons for what does not, for a small rule directory of every kind.
. "${MXW_SOURCE_DIR:?}/tests/support/cli.sh"
mkdir -p "$work/rules"
cat >"$work/rules/10_test.cf" <<'CF'
header SUBJ_FREE Subject =~ /\bfree\b/i
body   REPEATED  /(\w+) \1/
uri    SHORT     m{^https?://bit\.ly/}
meta   BOTH      SUBJ_FREE && SHORT
header EVALED    eval:check_something()
body   BADRE     /a{2,1}/
frobnicate X
CF
"$bin" rules check "$work/rules" >"$work/out" || fail "rules check exited $?"
grep -q '^rules loaded: 5 (header 1, body 2, rawbody 0, uri 1, full 0, meta 1)$' "$work/out" ||
    fail "loaded counts: $(cat "$work/out")"
grep -q '^regular expressions: 4, compiled in Hyperscan: 2, in PCRE2: 1, failed: 1$' "$work/out" ||
    fail "compiled counts: $(cat "$work/out")"
grep -q '^skipped BADRE (.*10_test.cf:6): ' "$work/out" || fail "no reason for BADRE"
grep -q '10_test.cf:5: rule EVALED skipped: eval tests' "$work/out" || fail "eval not reported"
grep -q '10_test.cf:7: unsupported directive "frobnicate"' "$work/out" || fail "directive not reported"
set +e
"$bin" rules check "$work/missing" >/dev/null 2>&1; rc=$?
set -e
[ $rc -eq 3 ] || fail "missing directory exit $rc"
echo "ok rules check"
