# Sourced by the scripts: one persistent cargo target directory outside the clone, so RocksDB's
# C++ (about 16 minutes on 2 cores) is built once per machine, and one profile (release) for
# the tests and the binaries they start.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keel/target}"
export KEEL_BIN="$CARGO_TARGET_DIR/release/keel"
