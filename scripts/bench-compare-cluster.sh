#!/usr/bin/env bash
# Benchmarks a 3-member etcd 3.4 cluster and a 3-member Keel cluster on this machine, in the same
# run, with the same `keel bench` parameters, then measures leader failover of both with
# `keel bench failover` (20 rounds each). Each cluster is started fresh on 127.0.0.1 with its data
# in a temporary directory, benchmarked with the load spread over all three members, and stopped
# (by PID) before the next one starts, so the two never compete for the CPU; its data is removed
# and the page cache written back before the next one starts, so they do not compete for the disk
# either.
#
#   bash scripts/bench-compare-cluster.sh [--rounds N] [extra keel bench flags, e.g. --total 20000]
#
# With --rounds N (default 1) the etcd and Keel benchmarks alternate N times, each round on fresh
# clusters, and a last table gives each test's median ops/s and p99 per system: runs on a small VM
# vary by 10-15 %, and one round can land on either side of a bar.
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

rounds=1
if [[ ${1:-} == --rounds ]]; then
    [[ ${2:-} =~ ^[1-9][0-9]?$ ]] || { echo "--rounds takes a number from 1 to 99" >&2; exit 2; }
    rounds=$2
    shift 2
fi

# Three members share the machine: each Keel member gets a third of its CPUs as runtime threads
# (as `keel up` does). etcd keeps its default GOMAXPROCS (one per CPU): GOMAXPROCS=1 made it
# slower here (docs/benchmarks.md).
keel_threads=$(( ($(nproc) + 2) / 3 ))
# The load generator (`keel bench`) is the same client for both systems; on one runtime thread
# it takes the least CPU from the members it measures. A second thread cost Keel 5-12 % of its
# puts here and made no difference to etcd (docs/benchmarks.md).
bench_threads=1

failed=()
cpu_model=$(awk -F": " '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo "# $(date -u +%Y-%m-%d), $(nproc) cores ($cpu_model), $(uname -r), $(etcd --version | head -1)"
echo "# keel members: --worker-threads $keel_threads; etcd members: GOMAXPROCS default;" \
    "load generator: --worker-threads $bench_threads"
echo

# bench_round SYSTEM ROUND: one fresh cluster of SYSTEM (etcd or keel), benchmarked and stopped;
# its report goes to stdout and to $work/report-SYSTEM-ROUND.
bench_round() {
    local system=$1 round=$2 report="$work/report-$1-$2"
    shift 2
    rm -rf "${work:?}/$system"
    mkdir -p "$work/$system"
    local started
    if [[ $system == etcd ]]; then
        start_cluster etcd 23810 23820 etcd && started=1 || started=0
    else
        start_cluster keel 23830 23840 "$KEEL_BIN" --worker-threads "$keel_threads" store && started=1 || started=0
    fi
    if ((started)); then
        local label="etcd 3.4, 3 members"
        [[ $system == keel ]] && label="keel, 3 members"
        ((rounds > 1)) && label+=", round $round"
        run "bench $system $round" "$KEEL_BIN" --worker-threads "$bench_threads" bench --endpoints "$endpoints" --label "$label" "$@" >"$report"
        cat "$report"
    else
        failed+=("start $system cluster (round $round)")
    fi
    stop_members
    # The next round starts on a quiet disk: the stopped cluster's data is removed and what it
    # left dirty in the page cache is written back now, not during the other system's round.
    rm -rf "${work:?}/$system"
    sync
}

# medians: each test's median ops/s and p99 over the rounds, per system, from the reports.
medians() {
    echo "## Medians of $rounds rounds"
    echo
    echo "| test | etcd ops/s | Keel ops/s | Keel / etcd | etcd p99 ms | Keel p99 ms |"
    echo "|---|---:|---:|---:|---:|---:|"
    awk -F'|' '
        FNR == 1 { sys = (FILENAME ~ /report-keel-/) ? "keel" : "etcd" }
        $2 ~ /^ *(seq-put|put|get-linearizable|get-serializable|watch) *$/ {
            test = $2; gsub(/ /, "", test)
            if (!(test in order)) { order[test] = ++tests; names[tests] = test }
            ops[sys, test] = ops[sys, test] " " $7 + 0
            p99[sys, test] = p99[sys, test] " " $9 + 0
        }
        function median(list,   n, v, i, j, t) {
            n = split(list, v, " ")
            for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j] < v[j - 1]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
            return n ? v[int((n + 1) / 2)] : 0
        }
        END {
            for (i = 1; i <= tests; i++) {
                t = names[i]
                e = median(ops["etcd", t]); k = median(ops["keel", t])
                printf "| %s | %d | %d | %.2fx | %.2f | %.2f |\n", t, e, k, e ? k / e : 0, median(p99["etcd", t]), median(p99["keel", t])
            }
        }' "$work"/report-*
    echo
}

for round in $(seq 1 "$rounds"); do
    bench_round etcd "$round" "$@"
    bench_round keel "$round" "$@"
done
((rounds > 1)) && medians

# The failover benchmark launches (and stops, by PID) its own clusters on free ports.
run "failover etcd" "$KEEL_BIN" bench failover --launch etcd --dir "$work/failover-etcd" --rounds 20 \
    --label "etcd 3.4, 3 members"
run "failover keel" "$KEEL_BIN" bench failover --launch keel --binary "$KEEL_BIN" --dir "$work/failover-keel" \
    --rounds 20 --label "keel, 3 members"

if ((${#failed[@]})); then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
