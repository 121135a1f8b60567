# Sourced by the command-level tests in tests/integration: strict mode, the
# source tree and binary from CTest's environment, a scratch directory removed
# on exit, and fail() for a one-line failure.
set -eu
top=${MXW_SOURCE_DIR:?}
bin=${MXW_BINARY:?}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# Run in the scratch directory with its own mxwarden.conf (read from the working
# directory): stores under var/ there, and no SPF/DKIM/DMARC, whose DNS answers would
# depend on the machine's network (tests/unit/test_auth.c covers them on a local server).
cd "$work"
printf '[auth]\nenabled = no\n[dnsbl]\nenabled = no\n' >"$work/mxwarden.conf"

# Starts `mxwarden serve` in the background (its output appended to $work/serve.log) and sets
# mxw_pid; returns once this start has logged "listening": a server killed before leaves its
# socket file behind, so the file alone says nothing.
start_mxw() {
    local before
    before=$(grep -c 'event=listening' "$work/serve.log" 2>/dev/null || true)
    "$bin" serve --pid-file "$work/mxw.pid" >>"$work/serve.log" 2>&1 &
    mxw_pid=$!
    for _ in $(seq 100); do
        [ "$(grep -c 'event=listening' "$work/serve.log" 2>/dev/null || true)" -gt "${before:-0}" ] &&
            return 0
        sleep 0.1
    done
    cat "$work/serve.log" >&2
    fail "mxwarden serve did not start"
}
