#!/usr/bin/env bash
# Benchmarks a single-member Keel store and a single-member etcd 3.4 on this machine, in the
# same run, with the same `keel bench` parameters. Both are started fresh on 127.0.0.1 with
# their data in a temporary directory and stopped by PID at the end.
#
#   bash scripts/bench-compare.sh [extra keel bench flags, e.g. --total 20000]
#
# The load travels over 4 connections to the one member (`--clients 4`, the setting of the runs
# in docs/benchmarks.md; `keel bench` alone opens one per endpoint) unless the flags say otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked --bin keel >/dev/null
command -v etcd >/dev/null || { echo "etcd is not installed: run scripts/setup.sh" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

wait_ready() {
    for _ in $(seq 1 100); do
        ETCDCTL_API=3 etcdctl --endpoints="$1" endpoint health >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server at $1 did not become ready" >&2
    exit 1
}

"$KEEL_BIN" store --name keel --data-dir "$work/keel" \
    --listen-client-urls http://127.0.0.1:23791 --advertise-client-urls http://127.0.0.1:23791 \
    >"$work/keel.log" 2>&1 &
pids+=($!)
etcd --name etcd --data-dir "$work/etcd" \
    --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
    --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster etcd=http://127.0.0.1:23800 >"$work/etcd.log" 2>&1 &
pids+=($!)
wait_ready 127.0.0.1:23791
wait_ready 127.0.0.1:23790

clients=(--clients 4)
[[ " $* " == *" --clients"* ]] && clients=()
cpu_model=$(awk -F": " '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo "# $(date -u +%Y-%m-%d), $(nproc) cores ($cpu_model), $(uname -r), $(etcd --version | head -1)"
for round in 1 2; do
    "$KEEL_BIN" bench --endpoints 127.0.0.1:23790 "${clients[@]}" --label "etcd 3.4, 1 member (round $round)" "$@" 2>/dev/null
    "$KEEL_BIN" bench --endpoints 127.0.0.1:23791 "${clients[@]}" --label "keel store, 1 member (round $round)" "$@" 2>/dev/null
done
