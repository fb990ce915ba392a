#!/usr/bin/env bash
# Sets up everything, builds Keel and starts a local store on 127.0.0.1:2379 (data in
# .keel/store). Ctrl-C stops it. (The three-master `keel up` arrives with the control plane.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo build --release --locked --bin keel
mkdir -p .keel
cat <<MSG
Keel store starting on http://127.0.0.1:2379 (data in .keel/store). Try, in another shell:
  ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379 put greeting hello
  ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379 get greeting -w json
  ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379 watch --prefix gr
MSG
exec "$KEEL_BIN" store --name keel-1 --data-dir .keel/store \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379
