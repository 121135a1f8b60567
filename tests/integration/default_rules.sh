#!/bin/sh
# The default rule set (rules/*.cf) and the built-in heuristics on hand-written
# samples: tests/data/rules/expect.txt lists per sample the rules that must fire
# and, prefixed with "!", those that must not. Each sample is scanned as it
# arrived: the envelope sender from its Return-Path, the recipient from
# X-Original-To, the arrival time from its first (newest) Received header.
# Also: no scored rule of ours is left without a sample that fires it.
. "${MXW_SOURCE_DIR:?}/tests/support/cli.sh"
data=$top/tests/data/rules
printf '[auth]\nenabled = no\n[dnsbl]\nenabled = no\n[rules]\npaths = %s/rules\ncache_dir = %s/cache\n' "$top" "$work" \
    >"$work/mxwarden.conf"

header() { # FILE NAME: the first value of header NAME, unfolded
    awk -v want="$2" 'BEGIN { IGNORECASE = 1 }
        /^$/ { exit }
        tolower($0) ~ "^" tolower(want) ":" { sub(/^[^:]*:[ \t]*/, ""); print; exit }' "$1"
}
failures=0 fired_all=""
while IFS= read -r line; do
    case $line in '' | '#'*) continue ;; esac
    file=${line%%:*}
    want=${line#*:}
    msg=$data/$file
    [ -f "$msg" ] || fail "expect.txt names a missing sample: $file"
    from=$(header "$msg" Return-Path | tr -d '<> ')
    rcpt=$(header "$msg" X-Original-To)
    when=$(header "$msg" Received | sed 's/.*;[ \t]*//')
    set -- scan --json
    [ -n "$from" ] && set -- "$@" --from "$from"
    [ -n "$rcpt" ] && set -- "$@" --rcpt "$rcpt"
    if [ -n "$when" ]; then
        t=$(date -d "$when" +%s 2>/dev/null) || fail "$file: cannot read the Received date: $when"
        set -- "$@" --time "$t"
    fi
    "$bin" "$@" "$msg" >"$work/out.json" 2>"$work/err" || fail "$file: scan exited $?: $(cat "$work/err")"
    fired=$(grep -o '"name":"[A-Z0-9_]*"' "$work/out.json" | sed 's/"name":"\(.*\)"/\1/' | tr '\n' ' ')
    fired_all="$fired_all $fired"
    for rule in $want; do
        case $rule in
        !*)
            case " $fired " in *" ${rule#!} "*)
                echo "FAIL: $file: ${rule#!} fired but must not" >&2; failures=$((failures + 1)) ;;
            esac ;;
        *)
            case " $fired " in *" $rule "*) ;;
            *) echo "FAIL: $file: $rule did not fire (fired: $fired)" >&2; failures=$((failures + 1)) ;;
            esac ;;
        esac
    done
done <"$data/expect.txt"
[ $failures -eq 0 ] || fail "$failures expectation(s) not met"
echo "ok every expectation of $(grep -c ':' "$data/expect.txt") samples"

# Every scored rule of ours fires on at least one sample.
"$bin" rules list >"$work/rules" 2>/dev/null
missing=""
for rule in $(awk '$3 != "-" && $3 != "0" { print $1 }' "$work/rules"); do
    case " $fired_all " in *" $rule "*) ;; *) missing="$missing $rule" ;; esac
done
[ -z "$missing" ] || fail "rules no sample fires:$missing"
echo "ok every one of $(awk '$3 != "-"' "$work/rules" | wc -l) scored rules fires on a sample"
[ "$(awk '$3 != "-"' "$work/rules" | wc -l)" -ge 80 ] || fail "fewer than 80 scored rules"
