#!/bin/sh
# `mxwarden learn`, `unlearn` and `stat` as a user runs them, on a private
# LMDB store: files, directories and mbox files; learning twice counts once;
# moving between classes; unlearning; a file that is not mail is refused with a
# clear error and nothing counted; Bayes symbols appear once min_learns is met.
. "${MXW_SOURCE_DIR:?}/tests/support/cli.sh"
conf="$work/mxwarden.conf"
printf '[store]\nkv = lmdb:%s/var/tokens.lmdb\n[bayes]\nmin_learns = 3\n' "$work" >"$conf"
mx() { "$bin" -c "$conf" "$@"; }
learned() { mx stat | awk -v c="$1" '$1 == "learned" && $2 == c { print $3 }'; }

mkdir -p "$work/spam" "$work/ham"
i=0
for topic in "cheap pills online pharmacy" "casino bonus free spins" "lottery winner claim prize" \
    "replica watches discount"; do
    i=$((i + 1))
    printf 'From: promo%d@spam.example\nSubject: %s\nMessage-ID: <s%d@spam.example>\n\n%s %s now\n' \
        $i "$topic" $i "$topic" "$topic" >"$work/spam/$i.eml"
    printf 'From: colleague%d@corp.example\nSubject: notes %d\nMessage-ID: <h%d@corp.example>\n\nproject meeting agenda notes %d\n' \
        $i $i $i $i >"$work/ham/$i.eml"
done

# A directory learns every file in it; the store directory is created.
out=$(mx learn --class spam "$work/spam")
[ "$out" = "learned 4 as spam, already learned 0, moved from another class 0, errors 0" ] ||
    fail "learn spam: $out"
[ "$(learned spam)" = 4 ] || fail "stat spam after learning"
# Learning again counts once.
out=$(mx learn --class spam "$work/spam/1.eml")
case "$out" in "learned 0 as spam, already learned 1,"*) ;; *) fail "relearn: $out" ;; esac
[ "$(learned spam)" = 4 ] || fail "relearn changed the count"

# An mbox of the four ham messages.
for f in "$work"/ham/*.eml; do printf 'From someone@corp.example Mon Jan  1 00:00:00 2024\n'; cat "$f"; echo; done \
    >"$work/ham.mbox"
out=$(mx learn --class ham "$work/ham.mbox")
[ "$out" = "learned 4 as ham, already learned 0, moved from another class 0, errors 0" ] ||
    fail "learn mbox: $out"

# A scan now has a Bayes verdict.
mx scan "$top/examples/spam-hidden-text.eml" >/dev/null
printf 'From: x@spam.example\nSubject: casino bonus\n\ncasino bonus free spins now\n' >"$work/probe.eml"
mx scan "$work/probe.eml" | grep -q '^BAYES_SPAM' || fail "no BAYES_SPAM after learning"

# Moving one message to ham, then unlearning it.
out=$(mx learn --class ham "$work/spam/4.eml")
case "$out" in *"moved from another class 1,"*) ;; *) fail "move: $out" ;; esac
[ "$(learned spam)" = 3 ] && [ "$(learned ham)" = 5 ] || fail "counts after move"
out=$(mx unlearn "$work/spam/4.eml")
[ "$out" = "unlearned 1, not learned before 0, errors 0" ] || fail "unlearn: $out"
[ "$(learned ham)" = 4 ] || fail "count after unlearn"

# Not mail: a clear error naming the file, exit 3, nothing counted.
head -c 2000 /dev/urandom | tr -d 'a-zA-Z:\n' >"$work/noise.bin"
set +e
mx learn --class spam "$work/noise.bin" >"$work/out" 2>"$work/err"
rc=$?
set -e
[ $rc -eq 3 ] || fail "not-mail exit $rc"
grep -q "noise.bin: not a mail message" "$work/err" || fail "not-mail error: $(cat "$work/err")"
[ "$(learned spam)" = 3 ] || fail "not-mail changed the count"

# Unknown class and an unusable store are clear errors.
set +e
mx learn --class spamm "$work/spam" >/dev/null 2>"$work/err"; rc1=$?
"$bin" -c /nonexistent.conf stat >/dev/null 2>"$work/err2"; rc2=$?
set -e
[ $rc1 -eq 2 ] && grep -q 'unknown class "spamm"' "$work/err" || fail "unknown class"
[ $rc2 -eq 1 ] && grep -q "nonexistent.conf" "$work/err2" || fail "missing config"
echo "ok learn/unlearn/stat"
