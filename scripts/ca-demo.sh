#!/usr/bin/env bash
# The CA flow end to end, on this machine, in a fresh temporary directory:
# a root, one cluster intermediate signed directly, one signed from a CSR (its key never
# leaves the cluster directory), a gateway and a workload certificate, then `openssl
# verify` and `isthmus ca verify` on each chain and `isthmus ca inspect` of one.
# This is what runs today; `isthmus dev` (a local mesh) replaces it when it exists.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --release
isthmus=target/release/isthmus
out=${1:-$(mktemp -d -t isthmus-ca-demo.XXXXXX)}
td=mesh.example
step() { printf '\n== %s\n' "$*"; }

step "root CA for $td"
$isthmus ca init --trust-domain "$td" --out "$out/root"

step "cluster east: intermediate signed directly by the root holder"
$isthmus ca intermediate --root-dir "$out/root" --cluster east --out "$out/east"

step "cluster west: key and CSR made in the cluster, signed by the root holder"
$isthmus ca csr --trust-domain "$td" --cluster west --out "$out/west"
$isthmus ca sign --root-dir "$out/root" --csr "$out/west/intermediate.csr" --cluster west --out "$out/west"

step "leaves: east's gateway, west's reviews workload"
$isthmus ca issue --ca-dir "$out/east" --spiffe-id "spiffe://$td/cluster/east/gateway/ew" \
  --dns ew.east.local --ttl 24h --out "$out/east-gateway"
$isthmus ca issue --ca-dir "$out/west" --spiffe-id "spiffe://$td/cluster/west/ns/shop/sa/reviews" \
  --ttl 1h --out "$out/west-reviews"

step "openssl verify, then isthmus ca verify, of each chain"
for leaf in east-gateway:east west-reviews:west; do
  dir=${leaf%%:*} cluster=${leaf##*:}
  openssl verify -CAfile "$out/root/root.pem" -untrusted "$out/$cluster/intermediate.pem" "$out/$dir/cert.pem"
  $isthmus ca verify --bundle "$out/root/bundle.pem" "$out/$dir/cert.pem"
done

step "inspect east's gateway certificate"
$isthmus ca inspect "$out/east-gateway/cert.pem"

printf '\nall files are in %s\n' "$out"
