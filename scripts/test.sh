#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the acceptance tests that start real `keel`
# processes and drive them with the real etcdctl and the etcd-client crate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo build --release --workspace --all-targets --locked
cargo nextest run --release --workspace --locked --no-fail-fast "$@"
