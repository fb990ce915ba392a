#!/usr/bin/env bash
# Installs everything Keel needs to build, run and test on Debian, as root. Idempotent: it
# installs only what is missing. Used by scripts/up.sh and scripts/test.sh (and so by CI).
set -euo pipefail

# protobuf-compiler: protoc for the etcd protos, and libprotobuf-dev: the well-known types they
# import (google/protobuf/descriptor.proto; only a Recommends of protobuf-compiler, which
# --no-install-recommends skips); libclang-dev/clang: RocksDB's bindgen;
# etcd-client: the real etcdctl 3.4 the acceptance tests drive; etcd-server: real etcd 3.4,
# the reference the differential tests and benchmarks compare against; kubectl: the real
# client the control-plane acceptance tests drive (Debian's dispatcher package);
# python3-kubernetes: the official Python client, one column of the client matrix test.
PACKAGES=(protobuf-compiler libprotobuf-dev libclang-dev clang etcd-client etcd-server kubectl python3-kubernetes)

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo is not installed; install Rust (rustup) first" >&2
    exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup: installing cargo-nextest"
    cargo install cargo-nextest --locked
fi
