#!/bin/sh
# `mxwarden serve` behind a real private Postfix (unix socket milter): clean
# mail is delivered with X-Spam-* headers; a disguised executable lands in the
# hold queue; a high-scoring phishing message is refused with 5xx at SMTP time;
# each has a message-log row. Then SIGHUP turns greylisting on without a
# restart: a first attempt gets 4xx, the retry after the delay is delivered.
# Finally mxwarden is killed: Postfix answers 4xx (nothing accepted unscanned),
# and after a restart the retried message is delivered. Needs root and Postfix.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "${MXW_SOURCE_DIR:?}/tests/support/cli.sh"
. "$top/tests/support/postfix.sh"
start_s=$(date +%s)
if [ "$(id -u)" != 0 ]; then
    echo "skip gateway_postfix: needs root (Postfix)"
    exit 0
fi
command -v postfix >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
command -v swaks >/dev/null 2>&1 || fail "swaks is not installed"

pf=$work/pf
mxw_pid=
stop_mxw() {
    [ -n "$mxw_pid" ] || return 0
    kill "$mxw_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$mxw_pid" 2>/dev/null || break; sleep 0.1; done
    mxw_pid=
}
trap 'stop_mxw; postfix_instance_stop "$pf"; rm -rf "$work"' EXIT
chmod 755 "$work"
sock=$work/var/milter.sock
cat >"$work/mxwarden.conf" <<CONF
[auth]
enabled = no
[dnsbl]
enabled = no
[milter]
listen = unix:$sock
workers = 2
[rules]
cache_dir = $work/cache
[postfix]
config_directory = $pf/etc
CONF
start_mxw
port=$(postfix_free_port) || fail "no free port"
postfix_instance_create "$pf" "$port" "unix:$sock" || fail "postfix_instance_create"
postfix_instance_start "$pf" || fail "postfix did not start"

send() { # EXPECTED_CODE_PREFIX ARGS...: sends with swaks, checks the final reply
    want=$1
    shift
    swaks --server "127.0.0.1:$port" --from alice@sender.example --to bob@test.example \
        --hide-informational "$@" >"$work/swaks.out" 2>&1 || true
    grep -q "^<[-*]* *$want" "$work/swaks.out" ||
        { cat "$work/swaks.out" >&2; fail "expected a $want reply"; }
}

# Clean mail: delivered with headers.
send "250 2.0.0 Ok: queued" --header "Subject: Notes from the planning meeting" \
    --body "Hi Bob, here are the notes from today. The next meeting is on Thursday. Alice"
postfix_wait_delivered "$pf" test.example 1 20 || fail "clean mail not delivered"
msg=$(ls "$(postfix_maildir "$pf" test.example)"/* | head -1)
grep -q "^X-Spam-Status: No, score=" "$msg" || fail "no X-Spam-Status on delivered mail"
grep -q "^X-Spam-Score: " "$msg" || fail "no X-Spam-Score on delivered mail"
echo "ok clean mail delivered with headers"

# A program disguised as an invoice: held.
printf 'MZ\220\000binary' >"$work/invoice.pdf.exe"
send "250 2.0.0 Ok: queued" --header "Subject: Overdue invoice" \
    --body "Your invoice is overdue. Please see the attached invoice and pay today." \
    --attach-type application/octet-stream --attach-name invoice.pdf.exe --attach "@$work/invoice.pdf.exe"
held=$(postqueue -c "$pf/etc" -j | grep -c '"queue_name": "hold"' || true)
[ "$held" -eq 1 ] || fail "the disguised program is not in the hold queue ($held)"
echo "ok malware held in the hold queue"

# Phishing with hidden text and a link to a bare IP: refused at SMTP time.
send "550 5.7.1" --data "$top/examples/spam-hidden-text.eml"
echo "ok spam refused with 550"

rows=$("$bin" quarantine list 2>/dev/null | grep -c "Overdue invoice" || true)
[ "$rows" -ge 1 ] || fail "quarantine list does not show the held message with its subject"
echo "ok quarantine list joins the message log"

# Greylisting switched on by a reload, no restart.
printf '[greylist]\nenabled = yes\ndelay_s = 2\n' >>"$work/mxwarden.conf"
kill -HUP "$mxw_pid"
sleep 1
grep -q 'msg="reloaded"' "$work/serve.log" || fail "no reload after SIGHUP"
send "451 4.7.1" --header "Subject: second note" --body "Another ordinary message."
sleep 3
send "250 2.0.0 Ok: queued" --header "Subject: second note" --body "Another ordinary message."
postfix_wait_delivered "$pf" test.example 2 20 || fail "greylisted retry not delivered"
echo "ok greylisted first attempt 451, retry delivered"

# mxwarden gone: Postfix tempfails; after a restart the retry goes through.
kill -KILL "$mxw_pid"
wait "$mxw_pid" 2>/dev/null || true
mxw_pid=
send "451 4.7.1" --header "Subject: third note" --body "A message while the filter is down."
start_mxw
send "250 2.0.0 Ok: queued" --header "Subject: third note" --body "A message while the filter is down."
postfix_wait_delivered "$pf" test.example 3 20 || fail "retry after restart not delivered"
echo "ok filter down: 451, then delivered after restart (no mail lost)"
echo "gateway_postfix took $(($(date +%s) - start_s)) s"
