#!/usr/bin/env bash
# Sets up everything, builds Keel and runs `keel up`: three masters on loopback, each an
# embedded store replica (mutual TLS between replicas) plus the Kubernetes API server (TLS,
# client certificates), and without flags three hollow nodes. Writes .keel/kubeconfig and prints
# how to use kubectl and etcdctl.
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo build --release --locked --bin keel
# Without flags: three hollow nodes, so what you apply gets scheduled and runs (simulated).
if (($# == 0)); then
    set -- --agents 3 --runtime simulated
fi
exec "$KEEL_BIN" up --dir .keel "$@"
