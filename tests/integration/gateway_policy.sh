#!/bin/sh
# The gateway's SMTP-time policy end to end: `mxwarden serve` behind a real
# private Postfix (unix socket milter), mail sent with swaks from loopback
# addresses, a real unbound on loopback serving a test blocklist.
#   - retention: at start serve deletes a message-log row and captures older
#     than their retention (an old-layout .eml and a segment), and keeps recent
#     ones; delivered messages are captured in serve's segment of the day;
#   - `senders add block spammer.example` while serve runs: MAIL FROM that
#     domain or a subdomain gets 5xx within seconds, other senders are
#     delivered, the refusal is in the message log; a rule serve cannot use
#     keeps the previous rules; `senders remove` lifts the block;
#   - DNSBL: the client 192.0.2.2 is listed in bl.test (return code
#     127.0.0.2 -> RBL_MXW_TEST, score 30): its message is refused with 5xx and
#     the symbol is in the message log; 192.0.2.3 is not listed and is delivered.
#     The blocklist check skips loopback and private clients (a relay or a
#     local submission is never looked up), so the test connects from
#     127.0.0.1 and presents these addresses with Postfix's XCLIENT, which
#     Postfix passes to the milter as the client;
#   - rate limit: after a reload with [ratelimit] client_ip = 3/1h, the first 3
#     messages from 127.0.0.3 are delivered and the 4th gets 4xx.
# Quarantine release/delete through a real Postfix is covered by quarantine_cli.sh.
# Needs root (Postfix), swaks, unbound and sqlite3.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "${MXW_SOURCE_DIR:?}/tests/support/cli.sh"
. "$top/tests/support/postfix.sh"
start_s=$(date +%s)
if [ "$(id -u)" != 0 ]; then
    echo "skip gateway_policy: needs root (Postfix)"
    exit 0
fi
command -v postfix >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
command -v swaks >/dev/null 2>&1 || fail "swaks is not installed"
command -v unbound >/dev/null 2>&1 || fail "unbound is not installed"
command -v sqlite3 >/dev/null 2>&1 || fail "sqlite3 is not installed"

pf=$work/pf
mxw_pid=
dns_pid=
stop_pid() { # PID: TERM, wait up to 10 s, then KILL
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
    [ -z "$mxw_pid" ] || stop_pid "$mxw_pid"
    [ -z "$dns_pid" ] || stop_pid "$dns_pid"
    postfix_instance_stop "$pf"
    rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
sock=$work/var/milter.sock
db=$work/var/mxwarden.db

# A blocklist zone on a real unbound: 192.0.2.2 is listed, everything else is not.
dns_port=$(postfix_free_port) || fail "no free port"
cat >"$work/unbound.conf" <<CONF
server:
  interface: 127.0.0.1@$dns_port
  do-ip6: no
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$work"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  local-zone: "." refuse
  local-zone: "bl.test." static
  local-data: "2.2.0.192.bl.test. A 127.0.0.2"
remote-control:
  control-enable: no
CONF
unbound -d -c "$work/unbound.conf" >"$work/unbound.log" 2>&1 &
dns_pid=$!
for _ in $(seq 50); do grep -q 'start of service' "$work/unbound.log" && break; sleep 0.1; done
grep -q 'start of service' "$work/unbound.log" || { cat "$work/unbound.log" >&2; fail "unbound did not start"; }

cat >"$work/mxwarden.conf" <<CONF
[store]
db = sqlite:$db
[auth]
enabled = no
[dns]
server = 127.0.0.1
port = $dns_port
timeout_ms = 1000
[dnsbl]
enabled = yes
lists = testbl bl.test type=ip 127.0.0.2=RBL_MXW_TEST:30
disabled = zen surbl ivmsip ivmuri
[milter]
listen = unix:$sock
workers = 2
[rules]
cache_dir = $work/cache
[gateway]
capture_dir = $work/var/capture
log_retention_days = 30
capture_retention_days = 7
[postfix]
config_directory = $pf/etc
CONF

# Retention: an old and a recent message-log row, an old and a recent capture, before serve starts.
"$bin" senders list >/dev/null || fail "senders list on a new database exited $?"
now=$(date +%s)
sqlite3 "$db" "INSERT INTO messages (time, action, stage, subject) VALUES
    ($((now - 40 * 86400)), 'accept', 'data', 'forty days old'),
    ($((now - 2 * 86400)), 'accept', 'data', 'two days old');"
# Captures: an old-layout ID.eml (written by earlier versions) and a segment of two records, both
# from 2020, which retention must remove counting 3 captures; and today's segment of one record
# (a pid serve cannot have), which it must keep.
old_capture=$work/var/capture/2020/01/02/OLD1.eml
old_segment=$work/var/capture/2020/01/03/s1.seg
new_capture=$work/var/capture/$(date -u +%Y/%m/%d)/s1.seg
mkdir -p "$(dirname "$old_capture")" "$(dirname "$old_segment")" "$(dirname "$new_capture")"
echo old >"$old_capture"
printf 'MXWCAP1 OLD2 4\nold1\nMXWCAP1 OLD3 4\nold2\n' >"$old_segment"
printf 'MXWCAP1 NEW1 3\nnew\n' >"$new_capture"

start_mxw
port=$(postfix_free_port) || fail "no free port"
postfix_instance_create "$pf" "$port" "unix:$sock" || fail "postfix_instance_create"
postfix_postconf "$pf" -e "smtpd_authorized_xclient_hosts = 127.0.0.0/8"
postfix_instance_start "$pf" || fail "postfix did not start"

sql() { sqlite3 -batch -noheader "$db" "$1"; }
[ "$(sql "SELECT count(*) FROM messages WHERE subject = 'forty days old'")" = 0 ] ||
    fail "the 40-day-old message-log row survived retention"
[ "$(sql "SELECT count(*) FROM messages WHERE subject = 'two days old'")" = 1 ] ||
    fail "retention deleted a recent message-log row"
[ ! -e "$old_capture" ] || fail "the old-layout capture survived retention"
[ ! -e "$old_segment" ] || fail "the old capture segment survived retention"
[ ! -e "$work/var/capture/2020" ] || fail "retention left the emptied 2020 directories"
[ -e "$new_capture" ] || fail "retention deleted today's capture"
grep -q 'msg="retention" what=message_log older_than_days=30 deleted=1' "$work/serve.log" ||
    fail "no retention log line for the message log: $(grep retention "$work/serve.log")"
grep -q 'msg="retention" what=captures .* deleted=3' "$work/serve.log" ||
    fail "no retention log line for the captures"
echo "ok retention at start: old log row and captures gone, recent ones kept"

send() { # EXPECTED_CODE_PREFIX FROM [SWAKS ARGS...]: sends with swaks, checks the final reply
    want=$1 from=$2
    shift 2
    swaks --server "127.0.0.1:$port" --from "$from" --to bob@test.example \
        --hide-informational "$@" >"$work/swaks.out" 2>&1 || true
    grep -q "^<[-*]* *$want" "$work/swaks.out" ||
        { cat "$work/swaks.out" >&2; fail "expected a $want reply for $from"; }
}
delivered=0
expect_delivered() { # one more message in the test.example Maildir
    delivered=$((delivered + 1))
    postfix_wait_delivered "$pf" test.example "$delivered" 20 || fail "$1 not delivered"
}
# Waits until serve logged one more "sender rules loaded" line than COUNT (a poll or a reload).
wait_rules_loaded() {
    for _ in $(seq 50); do
        [ "$(grep -c 'msg="sender rules loaded"' "$work/serve.log")" -gt "$1" ] && return 0
        sleep 0.1
    done
    fail "serve did not load the changed sender rules within 5 s"
}
body="Hi Bob, the notes from the planning meeting are attached below. See you Thursday."

# Sender rules: block a domain while serve runs.
send "250 2.0.0 Ok: queued" x@spammer.example --header "Subject: before the rule" --body "$body"
expect_delivered "mail before the block rule"
loads=$(grep -c 'msg="sender rules loaded"' "$work/serve.log")
"$bin" senders add block spammer.example --comment "test campaign" >"$work/out" ||
    fail "senders add exited $?"
grep -q "^[0-9]*	block	domain	spammer.example$" "$work/out" || fail "senders add said: $(cat "$work/out")"
wait_rules_loaded "$loads"
send "550 5.7.1" x@spammer.example --header "Subject: blocked" --body "$body"
send "550 5.7.1" y@mail.spammer.example --header "Subject: blocked sub" --body "$body"
send "250 2.0.0 Ok: queued" alice@sender.example --header "Subject: still welcome" --body "$body"
expect_delivered "mail from another sender"
rows=$(sql "SELECT count(*) FROM messages WHERE stage = 'mail' AND decided_by = 'sender_rule'
            AND action = 'reject' AND sender IN ('x@spammer.example', 'y@mail.spammer.example')")
[ "$rows" = 2 ] || fail "message log has $rows sender-rule refusals, want 2"
grep -q 'msg="refused" stage=mail client=127.0.0.1 sender="x@spammer.example" by=sender_rule' \
    "$work/serve.log" || fail "serve did not log the refusal"
[ "$(sql "SELECT count(*) FROM audit WHERE action = 'sender_rule.add' AND target = 'spammer.example'")" = 1 ] ||
    fail "no audit row for senders add"
echo "ok senders add block: domain and subdomain 550 without a restart, others delivered, logged"

# A rule serve cannot use (written behind the command's back) keeps the previous rules in force.
sql "INSERT INTO sender_rules (kind, value, action, created) VALUES ('ip', 'not-an-ip', 'block', 0);
     UPDATE generations SET value = value + 1 WHERE name = 'sender_rules';"
for _ in $(seq 50); do
    grep -q 'msg="sender rules not loaded; the previous ones stay"' "$work/serve.log" && break
    sleep 0.1
done
grep -q 'msg="sender rules not loaded; the previous ones stay"' "$work/serve.log" ||
    fail "serve did not report the unusable rule"
send "550 5.7.1" x@spammer.example --header "Subject: still blocked" --body "$body"
loads=$(grep -c 'msg="sender rules loaded"' "$work/serve.log")
sql "DELETE FROM sender_rules WHERE value = 'not-an-ip';
     UPDATE generations SET value = value + 1 WHERE name = 'sender_rules';"
wait_rules_loaded "$loads"
echo "ok an unusable rule in the table keeps the previous rules in force"

loads=$(grep -c 'msg="sender rules loaded"' "$work/serve.log")
"$bin" senders remove spammer.example >"$work/out" || fail "senders remove exited $?"
wait_rules_loaded "$loads"
send "250 2.0.0 Ok: queued" x@spammer.example --header "Subject: forgiven" --body "$body"
expect_delivered "mail after the rule was removed"
echo "ok senders remove: the domain is delivered again"

# Captures: the delivered messages were appended to serve's segment of today; the reference in
# the message log finds exactly the message's bytes.
ref=$(sql "SELECT capture_path FROM messages WHERE subject = 'forgiven'")
case $ref in
"$(date -u +%Y/%m/%d)/s$mxw_pid.seg:"[0-9]*:[0-9]*) ;;
*) fail "capture reference of the delivered message: '$ref' (serve pid $mxw_pid)" ;;
esac
seg_file=${ref%%:*} off=${ref#*:} && len=${off#*:} && off=${off%%:*}
tail -c +$((off + 1)) "$work/var/capture/$seg_file" | head -c "$len" >"$work/captured.eml"
[ "$(wc -c <"$work/captured.eml")" = "$len" ] || fail "capture $ref: file too short"
grep -q '^Subject: forgiven' "$work/captured.eml" || fail "capture $ref does not hold the message"
[ "$(tail -c +$((off + len + 1)) "$work/var/capture/$seg_file" | head -c 1 | od -An -tx1 |
    tr -d ' ')" = 0a ] || fail "capture $ref: no newline after the record"
segments=$(sql "SELECT count(DISTINCT substr(capture_path, 1, instr(capture_path, ':')))
    FROM messages WHERE capture_path IS NOT NULL")
[ "$segments" = 1 ] || fail "captures went to $segments segments, expected 1"
[ "$(stat -c %a "$work/var/capture/$seg_file")" = 600 ] || fail "segment is not mode 600"
echo "ok captures: appended to $seg_file, the reference reads back the message"

# DNSBL: a client the list does not name is delivered without the symbol; a listed one is refused.
send "250 2.0.0 Ok: queued" carol@sender.example --xclient-addr 192.0.2.3 \
    --header "Subject: from an unlisted host" --body "$body"
expect_delivered "mail from an unlisted client"
row=$(sql "SELECT client_ip, action, symbols FROM messages WHERE subject = 'from an unlisted host'")
case $row in
192.0.2.3\|*RBL_MXW_TEST*) fail "an unlisted client got the blocklist symbol: $row" ;;
192.0.2.3\|*) ;;
*) fail "message log row of the unlisted client: $row" ;;
esac
send "550 5.7.1 Message rejected as spam" carol@sender.example --xclient-addr 192.0.2.2 \
    --header "Subject: from a listed host" --body "$body"
row=$(sql "SELECT client_ip, action, symbols FROM messages WHERE subject = 'from a listed host'")
case $row in
192.0.2.2\|reject\|*RBL_MXW_TEST*) ;;
*) fail "message log row of the listed client: $row" ;;
esac
grep -q 'msg="client on a block list" stage=connect client=192.0.2.2 listings=1' "$work/serve.log" ||
    fail "the block list was not asked at connect"
! grep -q 'msg="client on a block list" stage=connect client=192.0.2.3' "$work/serve.log" ||
    fail "the unlisted client was reported listed at connect"
echo "ok dnsbl: listed client 192.0.2.2 (asked at connect) refused 550 with RBL_MXW_TEST in the message log, 192.0.2.3 delivered"

# Rate limit per client IP, switched on by a reload.
printf '[ratelimit]\nenabled = yes\nclient_ip = 3/1h\nsender_domain = 0\nrecipient = 0\n' \
    >>"$work/mxwarden.conf"
reloads=$(grep -c 'msg="reloaded"' "$work/serve.log" || true)
kill -HUP "$mxw_pid"
for _ in $(seq 100); do
    [ "$(grep -c 'msg="reloaded"' "$work/serve.log" || true)" -gt "$reloads" ] && break
    sleep 0.1
done
[ "$(grep -c 'msg="reloaded"' "$work/serve.log" || true)" -gt "$reloads" ] || fail "no reload after SIGHUP"
for i in 1 2 3; do
    send "250 2.0.0 Ok: queued" alice@sender.example --local-interface 127.0.0.3 \
        --header "Subject: burst $i" --body "$body"
    expect_delivered "burst message $i"
done
send "451 4.7.1" alice@sender.example --local-interface 127.0.0.3 \
    --header "Subject: burst 4" --body "$body"
grep -q "Rate limit exceeded" "$work/swaks.out" || fail "the 4xx is not the rate limit's"
[ "$(sql "SELECT count(*) FROM messages WHERE decided_by = 'rate_limit' AND client_ip = '127.0.0.3'")" = 1 ] ||
    fail "no message-log row for the rate-limited connection"
echo "ok rate limit 3/1h: three delivered, the fourth 451"
# serve stops cleanly (status 0; under ASan: no sanitizer report, no leak of a swapped snapshot).
kill "$mxw_pid"
set +e
wait "$mxw_pid"
rc=$?
set -e
mxw_pid=
[ "$rc" = 0 ] || { tail -20 "$work/serve.log" >&2; fail "serve exited $rc"; }
! grep -q 'Sanitizer' "$work/serve.log" || { grep -A20 Sanitizer "$work/serve.log" >&2; fail "sanitizer report"; }
echo "ok serve stopped cleanly"
echo "gateway_policy took $(($(date +%s) - start_s)) s"
