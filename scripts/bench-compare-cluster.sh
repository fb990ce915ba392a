#!/usr/bin/env bash
# Benchmarks a 3-member etcd 3.4 cluster and a 3-member Keel cluster on this machine, in the same
# run, with the same `keel bench` parameters, then measures leader failover of both with
# `keel bench failover` (20 rounds each). Each cluster is started fresh on 127.0.0.1 with its data
# in a temporary directory, benchmarked with the load spread over all three members, and stopped
# (by PID) before the next one starts, so the two never compete for the CPU.
#
#   bash scripts/bench-compare-cluster.sh [extra keel bench flags, e.g. --total 20000]
#
# Every section runs even if an earlier one failed; the script exits non-zero if any did.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked --bin keel >/dev/null
command -v etcd >/dev/null || { echo "etcd is not installed: run scripts/setup.sh" >&2; exit 1; }
command -v etcdctl >/dev/null || { echo "etcdctl is not installed: run scripts/setup.sh" >&2; exit 1; }

work=$(mktemp -d)
pids=()
stop_members() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_members
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ready() {
    for _ in $(seq 1 300); do
        ETCDCTL_API=3 etcdctl --endpoints="$1" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1 \
            && return 0
        sleep 0.1
    done
    echo "member at $1 did not become ready" >&2
    return 1
}

# start_cluster NAME CLIENT_BASE PEER_BASE COMMAND...: three members m0..m2 on client ports
# CLIENT_BASE+0..2 and peer ports PEER_BASE+0..2, started as `COMMAND <etcd flags>`; sets
# $endpoints to the client endpoints, comma-separated. (Not called in a subshell: the member PIDs
# must reach $pids.)
start_cluster() {
    local name=$1 client_base=$2 peer_base=$3
    shift 3
    local initial=""
    endpoints=""
    for i in 0 1 2; do
        initial+="${initial:+,}m$i=http://127.0.0.1:$((peer_base + i))"
        endpoints+="${endpoints:+,}127.0.0.1:$((client_base + i))"
    done
    for i in 0 1 2; do
        local client="http://127.0.0.1:$((client_base + i))" peer="http://127.0.0.1:$((peer_base + i))"
        "$@" --name "m$i" --data-dir "$work/$name/m$i" \
            --listen-client-urls "$client" --advertise-client-urls "$client" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token "$name-bench" \
            >"$work/$name-m$i.log" 2>&1 &
        pids+=($!)
    done
    for i in 0 1 2; do
        wait_ready "127.0.0.1:$((client_base + i))" || {
            for j in 0 1 2; do echo "---- $name m$j ----" >&2; tail -20 "$work/$name-m$j.log" >&2; done
            return 1
        }
    done
    # One cluster, not three single members: three members listed, every member names one leader.
    local leaders members
    for _ in $(seq 1 100); do
        leaders=$(ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint status -w fields 2>/dev/null \
            | grep '^"Leader"' | sort -u | wc -l)
        members=$(ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$client_base" member list 2>/dev/null | wc -l)
        [[ $leaders == 1 && $members == 3 ]] && return 0
        sleep 0.1
    done
    echo "$name: the three members do not form one cluster ($members members listed, $leaders distinct leaders)" >&2
    return 1
}

# run NAME COMMAND...: runs a benchmark, its stderr (progress logs) kept aside and shown only if
# it fails.
run() {
    local name=$1
    shift
    "$@" 2>"$work/$name.err" || {
        failed+=("$name")
        echo "---- $name failed; its stderr: ----" >&2
        grep -v ' INFO ' "$work/$name.err" | tail -150 >&2
    }
}

failed=()
echo "# $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), $(etcd --version | head -1)"
echo

mkdir -p "$work/etcd" "$work/keel"
if start_cluster etcd 23810 23820 etcd; then
    run "bench etcd" "$KEEL_BIN" bench --endpoints "$endpoints" --label "etcd 3.4, 3 members" "$@"
else
    failed+=("start etcd cluster")
fi
stop_members

if start_cluster keel 23830 23840 "$KEEL_BIN" store; then
    run "bench keel" "$KEEL_BIN" bench --endpoints "$endpoints" --label "keel, 3 members" "$@"
else
    failed+=("start keel cluster")
fi
stop_members

# The failover benchmark launches (and stops, by PID) its own clusters on free ports.
run "failover etcd" "$KEEL_BIN" bench failover --launch etcd --dir "$work/failover-etcd" --rounds 20 \
    --label "etcd 3.4, 3 members"
run "failover keel" "$KEEL_BIN" bench failover --launch keel --binary "$KEEL_BIN" --dir "$work/failover-keel" \
    --rounds 20 --label "keel, 3 members"

if ((${#failed[@]})); then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
