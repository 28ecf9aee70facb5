# Sourced by the command-line tests: a scratch folder removed on exit, and check NAME CONDITION...,
# which prints "ok: NAME" or "FAIL: NAME" and remembers a failure in $fail (the test exits with it).
set -uo pipefail
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() {  # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then echo "ok: $name"; else echo "FAIL: $name"; fail=1; fi
}
