# Sourced by the command-level tests in tests/integration: strict mode, the
# source tree and binary from CTest's environment, a scratch directory removed
# on exit, and fail() for a one-line failure.
set -eu
top=${MXW_SOURCE_DIR:?}
bin=${MXW_BINARY:?}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
