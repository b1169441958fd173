#!/usr/bin/env bash
# The whole test suite: installs what is missing, starts the local sandbox
# (two tansu clusters and etcd), runs every test, stops the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export STRAIT_SANDBOX_DIR="${STRAIT_SANDBOX_DIR:-$PWD/compose/.sandbox}"
compose/sandbox.sh up >/dev/null
trap 'compose/sandbox.sh down >/dev/null 2>&1 || true' EXIT
export STRAIT_SANDBOX="$STRAIT_SANDBOX_DIR/env"
cargo build --workspace --all-targets --locked
cargo test --workspace --locked "$@"
