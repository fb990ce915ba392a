#!/usr/bin/env bash
# Sets up everything, builds Keel and starts a local three-member store cluster on loopback:
# clients on 127.0.0.1:2379, 22379, 32379 (peers on 2380, 22380, 32380), data in .keel/store-N.
# Ctrl-C stops all three. This is the store alone; `scripts/up.sh` (`keel up`) runs the whole
# control plane.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo build --release --locked --bin keel
mkdir -p .keel
client_ports=(2379 22379 32379)
peer_ports=(2380 22380 32380)
cluster=""
for i in 0 1 2; do
    cluster+="${cluster:+,}keel-$((i + 1))=http://127.0.0.1:${peer_ports[$i]}"
done
pids=()
stopping=0
stop() {
    stopping=1
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT INT TERM
for i in 0 1 2; do
    name="keel-$((i + 1))"
    "$KEEL_BIN" store --name "$name" --data-dir ".keel/store-$((i + 1))" \
        --listen-client-urls "http://127.0.0.1:${client_ports[$i]}" \
        --advertise-client-urls "http://127.0.0.1:${client_ports[$i]}" \
        --listen-peer-urls "http://127.0.0.1:${peer_ports[$i]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${peer_ports[$i]}" \
        --initial-cluster "$cluster" --initial-cluster-token keel-local \
        >".keel/$name.log" 2>&1 &
    pids+=("$!")
done
endpoints="127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"
cat <<MSG
Keel store: three members (logs in .keel/keel-N.log). Try, in another shell:
  export ETCDCTL_API=3 ETCDCTL_ENDPOINTS=$endpoints
  etcdctl endpoint status -w table
  etcdctl put greeting hello
  etcdctl get greeting -w json
  etcdctl member list -w table
Ctrl-C stops the cluster.
MSG
wait -n "${pids[@]}" || true
[ "$stopping" = 1 ] || echo "a member exited; see .keel/keel-N.log" >&2
