#!/bin/sh
# `mxwarden quarantine` against a real private Postfix (no milter): messages
# put on hold by a header_checks HOLD rule are listed (joined with the message
# log), shown, released (delivered, sender allowed), deleted (gone), rejected
# (a notice reaches the sender's mailbox); unknown and malformed ids, a
# stopped Postfix and purge by age give the documented exit codes; every
# action leaves an audit row. Needs root (postsuper/postcat) and Postfix.
#
# MXW_QUARANTINE_DRIVER, if set, is run instead of $MXW_BINARY (a stand-in
# that calls quarantine_command() until main.c has the command).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "${MXW_SOURCE_DIR:?}/tests/support/cli.sh"
. "$top/tests/support/postfix.sh"
start_s=$(date +%s)
bin=${MXW_QUARANTINE_DRIVER:-$bin}

if [ "$(id -u)" != 0 ]; then
    echo "skip quarantine_cli: needs root (Postfix queue files are root/postfix only)"
    exit 0
fi
command -v postfix >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
command -v postfix >/dev/null 2>&1 || fail "Postfix is not installed (scripts/install-deps)"
command -v swaks >/dev/null 2>&1 || fail "swaks is not installed"

pf=$work/pf
trap 'postfix_instance_stop "$pf"; rm -rf "$work"' EXIT
chmod 755 "$work" # the virtual agent delivers as uid 65534 below it
port=$(postfix_free_port) || fail "no free port"
postfix_instance_create "$pf" "$port" || fail "postfix_instance_create"
printf '/^Subject:.*\\[hold\\]/ HOLD held by test\n' >"$pf/etc/header_checks"
postfix_postconf "$pf" -e "header_checks = regexp:$pf/etc/header_checks"
postfix_instance_start "$pf" || fail "postfix did not start"

cat >>"$work/mxwarden.conf" <<EOF2
[store]
db = sqlite:$work/var/mxwarden.db
[postfix]
config_directory = $pf/etc
EOF2
db=$work/var/mxwarden.db
q() { "$bin" quarantine "$@"; }
# Runs "$@", storing its exit status in rc (strict mode stays on).
run() {
    set +e
    "$@"
    rc=$?
    set -e
}
held_count() { postqueue -c "$pf/etc" -j | grep -c '"queue_name": "hold"' || true; }
send() { # FROM SUBJECT
    swaks --server "127.0.0.1:$port" --from "$1" --to bob@test.example \
        --h-Subject "$2" --body "body of $2" >"$work/swaks.log" 2>&1 ||
        fail "swaks: $(tail -3 "$work/swaks.log")"
}

send alice@sender.example "[hold] one"
send alice@sender.example "[hold] two"
send carol@sender.example "[hold] three"
send alice@sender.example "[hold] four"
send '<>' "[hold] bounce"
send alice@sender.example "passes"
postfix_wait_delivered "$pf" test.example 1 || fail "unheld mail not delivered"
[ "$(held_count)" = 5 ] || fail "expected 5 held messages, have $(held_count)"

# list: one line per held message, queue order irrelevant.
q list >"$work/list" 2>"$work/err" || fail "list exited $?: $(cat "$work/err")"
[ "$(wc -l <"$work/list")" = 5 ] || fail "list: $(cat "$work/list")"
id_of() {
    for id in $(cut -f1 "$work/list"); do
        postcat -c "$pf/etc" -h -q "$id" 2>/dev/null | grep -q "^Subject: \[hold\] $1\$" && {
            echo "$id"
            return
        }
    done
}
one=$(id_of one) two=$(id_of two) three=$(id_of three) four=$(id_of four) bounce=$(id_of bounce)
[ -n "$one" ] && [ -n "$two" ] && [ -n "$three" ] && [ -n "$four" ] && [ -n "$bounce" ] ||
    fail "could not find the held ids in: $(cat "$work/list")"
grep -q "^$one	[0-9T:-]*Z	[0-9]*	alice@sender.example	bob@test.example	-		\$" "$work/list" ||
    fail "list line of $one: $(grep "^$one" "$work/list")"
echo "ok list"

# The join with the message log (rows the milter will write; here written directly).
if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 "$db" "INSERT INTO messages (time, queue_id, sender, recipients, size, subject, score,
        action, decided_by, stage, reason) VALUES (strftime('%s','now'), '$one',
        'alice@sender.example', '[\"bob@test.example\"]', 400, '[hold] one', 9.5, 'quarantine',
        'scan', 'data', 'score 9.5 >= quarantine threshold 8')"
    q list >"$work/list" 2>"$work/err" || fail "list exited $?"
    grep -q "^$one	.*	9.50	\[hold\] one	score 9.5 >= quarantine threshold 8\$" "$work/list" ||
        fail "joined list line: $(grep "^$one" "$work/list")"
    echo "ok list joined with the message log"
else
    echo "skip join check: no sqlite3 command"
fi

# Without the message log, list still shows the queue (with a warning); actions refuse to run
# unaudited.
cp "$work/mxwarden.conf" "$work/mxwarden.conf.good"
sed -i 's|^db = .*|db = postgresql://nowhere/mxw|' "$work/mxwarden.conf"
q list >"$work/list2" 2>"$work/err" || fail "list without the log exited $?"
[ "$(wc -l <"$work/list2")" = 5 ] || fail "list without the log: $(cat "$work/list2")"
grep -q 'message log unavailable' "$work/err" || fail "no warning: $(cat "$work/err")"
run q delete "$two" >/dev/null 2>"$work/err"
[ $rc = 1 ] || fail "delete without the audit log exited $rc"
grep -q 'cannot open the records database' "$work/err" || fail "no reason: $(cat "$work/err")"
mv "$work/mxwarden.conf.good" "$work/mxwarden.conf"
[ "$(held_count)" = 5 ] || fail "an unaudited action happened"
echo "ok without the message log"

# show
q show "$two" >"$work/show" || fail "show exited $?"
grep -q '^Subject: \[hold\] two$' "$work/show" || fail "show: $(head -20 "$work/show")"
grep -q "^\*\*\* ENVELOPE RECORDS hold/$two \*\*\*" "$work/show" || fail "show lacks the envelope"
echo "ok show"

# release --allow-sender: delivered, and the sender allowed from now on.
q release --allow-sender "$one" >"$work/out" || fail "release exited $?"
grep -q "^$one: released$" "$work/out" || fail "release said: $(cat "$work/out")"
grep -q "^$one: sender alice@sender.example allowed$" "$work/out" || fail "no allow rule said"
postfix_wait_delivered "$pf" test.example 2 || fail "released mail not delivered"
grep -l '^Subject: \[hold\] one$' "$(postfix_maildir "$pf" test.example)"/* >/dev/null ||
    fail "the delivered message is not the released one"
echo "ok release"

# delete: gone from the queue, never delivered.
q delete "$two" >"$work/out" || fail "delete exited $?"
grep -q "^$two: deleted$" "$work/out" || fail "delete said: $(cat "$work/out")"
run q show "$two" 2>"$work/err" >/dev/null
[ $rc = 3 ] || fail "show of a deleted message exited $rc"
echo "ok delete"

# reject: a notice to carol@sender.example (delivered locally), then gone.
q reject --reason "Looks like spam to us" "$three" >"$work/out" || fail "reject exited $?"
grep -q "^$three: rejected$" "$work/out" || fail "reject said: $(cat "$work/out")"
postfix_wait_delivered "$pf" sender.example 1 || fail "no notice reached the sender"
notice=$(grep -l "^X-Postfix-Queue-ID: $three$" "$(postfix_maildir "$pf" sender.example)"/*) ||
    fail "the notice does not name $three"
grep -q '^Return-Path: <>$' "$notice" || fail "notice not from the null sender"
grep -q '^Delivered-To: carol@sender.example$' "$notice" || fail "notice to the wrong sender"
grep -q '^Final-Recipient: rfc822; bob@test.example$' "$notice" || fail "notice lacks recipient"
grep -q 'Looks like spam to us' "$notice" || fail "notice lacks the reason"
grep -q '^Subject: \[hold\] three$' "$notice" || fail "notice lacks the original headers"
# The null sender gets no notice; the message is still deleted.
q reject "$bounce" >"$work/out" || fail "reject of the null sender exited $?"
[ "$(held_count)" = 1 ] || fail "after reject: $(held_count) held"
echo "ok reject"

# Unknown and malformed ids.
run q delete NOSUCHID1 "$four" >"$work/out" 2>"$work/err"
[ $rc = 3 ] || fail "delete of an unknown id exited $rc"
grep -q 'NOSUCHID1: not in the hold queue' "$work/err" || fail "unknown id: $(cat "$work/err")"
grep -q "^$four: deleted$" "$work/out" || fail "bulk delete did not go on after the unknown id"
run q release '../etc/passwd' 2>"$work/err"
[ $rc = 2 ] || fail "malformed id exited $rc"
grep -q 'not a queue id' "$work/err" || fail "malformed id: $(cat "$work/err")"
run q frobnicate 2>/dev/null
[ $rc = 2 ] || fail "unknown subcommand exited $rc"
echo "ok unknown ids"

# purge by age: a fresh message survives 1 day, not 0.
send alice@sender.example "[hold] five"
sleep 1.1
q purge --older-than 1 >"$work/out" || fail "purge exited $?"
grep -q '^purged 0 of 1 held messages' "$work/out" || fail "purge 1: $(cat "$work/out")"
q purge --older-than 0 >"$work/out" || fail "purge exited $?"
grep -q '^purged 1 of 1 held messages' "$work/out" || fail "purge 0: $(cat "$work/out")"
[ "$(held_count)" = 0 ] || fail "purge left $(held_count)"
echo "ok purge"

# The audit log: one row per action with the actor.
if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 -separator ' ' "$db" 'SELECT action, target, details FROM audit ORDER BY id' \
        >"$work/audit"
    for want in "quarantine.show $two" "quarantine.release $one" \
        "sender_rule.add alice@sender.example" "quarantine.delete $two" \
        "quarantine.reject $three" "quarantine.delete NOSUCHID1 {\"result\":\"not_found\"" \
        "quarantine.purge "; do
        grep -qF "$want" "$work/audit" || fail "no audit row \"$want\" in: $(cat "$work/audit")"
    done
    [ "$(sqlite3 "$db" "SELECT count(*) FROM audit WHERE actor = '$(id -un)'")" -ge 9 ] ||
        fail "audit rows lack the actor"
    [ "$(sqlite3 "$db" "SELECT action FROM sender_rules WHERE value = 'alice@sender.example'")" \
        = allow ] || fail "no allow rule stored"
    echo "ok audit"
fi

# Postfix stopped: postqueue reads the queue directly (root), so list still works.
postfix_instance_stop "$pf"
q list >/dev/null 2>"$work/err" || fail "list with Postfix stopped exited $?: $(cat "$work/err")"
echo "ok postfix stopped"

# A broken Postfix configuration: a clear error naming the command, exit 1, for list and actions.
sed -i "s|^config_directory = .*|config_directory = $work/no-such-dir|" "$work/mxwarden.conf"
run q list >/dev/null 2>"$work/err"
[ $rc = 1 ] || fail "list with a missing config directory exited $rc"
grep -q 'cannot list the hold queue: postfix: postqueue -c .*no-such-dir -j: exit status' \
    "$work/err" || fail "broken config: $(cat "$work/err")"
run q delete ABC123 >/dev/null 2>"$work/err"
[ $rc = 1 ] || fail "delete with a missing config directory exited $rc"
grep -q 'ABC123: postfix: postsuper .*exit status' "$work/err" || fail "delete: $(cat "$work/err")"
echo "ok broken configuration"
echo "quarantine_cli took $(($(date +%s) - start_s)) s"
