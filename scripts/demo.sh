#!/usr/bin/env bash
# What runs today, end to end, on this machine, in a fresh temporary directory:
#  1. the CA: a root, cluster east's intermediate signed directly, cluster west's from a
#     CSR (its key never leaves west's directory), gateway and workload certificates,
#     each chain checked by `openssl verify` and `isthmus ca verify`;
#  2. the tunnel: west's gateway exports an HTTP server, east's gateway imports it, and
#     `curl` reaches it through east -> QUIC + mutual TLS -> west; both gateways'
#     metrics are shown, then both drain on SIGTERM.
# `isthmus dev` (a local mesh with a federation and DNS) replaces this when it exists.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --release
isthmus=$PWD/target/release/isthmus
out=${1:-$(mktemp -d -t isthmus-demo.XXXXXX)}
td=mesh.example
step() { printf '\n== %s\n' "$*"; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

step "root CA for $td"
$isthmus ca init --trust-domain "$td" --out "$out/root"

step "cluster east: intermediate signed directly by the root holder"
$isthmus ca intermediate --root-dir "$out/root" --cluster east --out "$out/east"

step "cluster west: key and CSR made in the cluster, signed by the root holder"
$isthmus ca csr --trust-domain "$td" --cluster west --out "$out/west"
$isthmus ca sign --root-dir "$out/root" --csr "$out/west/intermediate.csr" --cluster west --out "$out/west"

step "leaves: both gateways, and west's reviews workload"
for cluster in east west; do
  $isthmus ca issue --ca-dir "$out/$cluster" --spiffe-id "spiffe://$td/cluster/$cluster/gateway/ew" \
    --ttl 24h --out "$out/$cluster-gateway"
done
$isthmus ca issue --ca-dir "$out/west" --spiffe-id "spiffe://$td/cluster/west/ns/shop/sa/reviews" \
  --ttl 1h --out "$out/west-reviews"

step "openssl verify, then isthmus ca verify, of each chain"
for leaf in east-gateway:east west-gateway:west west-reviews:west; do
  dir=${leaf%%:*} cluster=${leaf##*:}
  openssl verify -CAfile "$out/root/root.pem" -untrusted "$out/$cluster/intermediate.pem" "$out/$dir/cert.pem"
  $isthmus ca verify --bundle "$out/root/bundle.pem" "$out/$dir/cert.pem"
done

step "inspect east's gateway certificate"
$isthmus ca inspect "$out/east-gateway/cert.pem"

# Waits (at most 10 s) for a gateway's "ready" line, then prints its address lines.
wait_ready() {
  for _ in $(seq 100); do
    grep -q ' ready$' "$1" 2>/dev/null && { cat "$1"; return; }
    sleep 0.1
  done
  echo "gateway did not start; its log:" >&2; cat "$1" "$1.err" >&2; exit 1
}
field() { grep -m1 "^  $2" "$1" | awk '{print $NF}'; }

step "an HTTP server in west, exported by west's gateway"
mkdir -p "$out/www" && echo "hello from west" > "$out/www/index.html"
python3 -u -m http.server --bind 127.0.0.1 0 --directory "$out/www" > "$out/http.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q 'port' "$out/http.log" && break; sleep 0.1; done
web=127.0.0.1:$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$out/http.log" | head -1)
cat > "$out/west.toml" <<TOML
cluster = "west"
[tls]
bundle = "west-gateway/bundle.pem"
cert = "west-gateway/cert.pem"
key = "west-gateway/key.pem"
[listen]
quic = "127.0.0.1:0"
metrics = "127.0.0.1:0"
[[peers]]
cluster = "east"
address = "127.0.0.1:9"   # west never dials east in this demo
[[exports]]
namespace = "shop"
name = "web"
[[exports.ports]]
port = 80
endpoints = ["$web"]
TOML
$isthmus gateway run --config "$out/west.toml" > "$out/west.out" 2> "$out/west.out.err" &
pids+=($!)
wait_ready "$out/west.out"

step "east's gateway imports shop/web from west"
cat > "$out/east.toml" <<TOML
cluster = "east"
[tls]
bundle = "east-gateway/bundle.pem"
cert = "east-gateway/cert.pem"
key = "east-gateway/key.pem"
[listen]
quic = "127.0.0.1:0"
metrics = "127.0.0.1:0"
[[peers]]
cluster = "west"
address = "$(field "$out/west.out" quic)"
[[imports]]
namespace = "shop"
name = "web"
cluster = "west"
port = 80
listen = "127.0.0.1:0"
TOML
$isthmus gateway run --config "$out/east.toml" > "$out/east.out" 2> "$out/east.out.err" &
pids+=($!)
wait_ready "$out/east.out"

step "curl through east -> QUIC + mutual TLS -> west"
curl -sS --max-time 10 "http://$(field "$out/east.out" import)/index.html"

step "east's metrics"
curl -sS --max-time 10 "$(field "$out/east.out" metrics)" | grep -E '^isthmus_gateway_(connections_opened|bytes)_total'

step "SIGTERM: both gateways drain and stop"
kill -TERM "${pids[2]}" "${pids[1]}"
wait "${pids[2]}" "${pids[1]}" || true
tail -n 1 "$out/east.out.err" "$out/west.out.err"

printf '\nall files are in %s\n' "$out"
