#!/usr/bin/env bash
# The whole test suite: installs what is missing, starts the local sandbox
# (two Apache Kafka clusters and etcd), runs every test and the chaos suite
# on them, then runs the tansu subset (the same tests on tansu, the second
# Kafka-compatible broker), and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --tests
# Disk is the limit a CI machine met first (the build and the rolling
# upgrade's older build); say what there is, so a full disk is plain.
echo "test: $(df -h --output=avail . | tail -1 | tr -d ' ') free on $(df --output=target . | tail -1)"
base="${STRAIT_SANDBOX_DIR:-$PWD/compose/.sandbox}"
export STRAIT_SANDBOX_DIR="$base"
down() { STRAIT_SANDBOX_DIR="$1" compose/sandbox.sh down >/dev/null 2>&1 || true; }
trap 'down "$base"; down "$base/tansu"' EXIT
STRAIT_BROKER=kafka compose/sandbox.sh up >/dev/null
export STRAIT_SANDBOX="$base/env"
# Style first: a formatting slip or a clippy warning fails the run.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Benchmarks and examples are compiled (so they keep building) but not run.
cargo build --workspace --all-targets --locked
# deploy/: alert rules, Kubernetes manifests, systemd units.
scripts/check-deploy.sh
log="$base/test.log"
echo "test: the whole suite on Apache Kafka"
cargo test --workspace --lib --bins --tests --locked "$@" 2>&1 | tee "$log"

# strait beside MirrorMaker 2, the short version, on the same brokers: the
# comparison must keep running (a tool that misses a record or a figure that
# cannot be taken fails it). Built with the tests' profile, so its figures
# are the debug build's on a shared machine: printed, never quoted.
echo "test: strait beside MirrorMaker 2 (cargo bench --bench versus_mm2, BENCH_QUICK)"
BENCH_QUICK=1 BENCH_BUSY="CI: debug build, shared machine: not comparable" \
  cargo bench --locked --profile dev --bench versus_mm2 2>&1 | tail -40

# The tansu subset: the end-to-end replication and failover tests again,
# on the second broker ("any Kafka-compatible broker" is a promise). A test
# that meets a tansu gap says so and skips there; it never skips on Kafka.
if [ "${STRAIT_TANSU:-1}" != 0 ]; then
  down "$base" # the Kafka clusters are not needed any more
  STRAIT_SANDBOX_DIR="$base/tansu" STRAIT_BROKER=tansu compose/sandbox.sh up >/dev/null
  echo "test: the tansu subset (e2e, failover, exactly_once)"
  STRAIT_SANDBOX="$base/tansu/env" cargo test --locked --test e2e --test failover --test exactly_once "$@" 2>&1 | tee -a "$log"
  down "$base/tansu"
fi
# One closing line with the totals over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"

# The chaos suite's CI profile: a fleet of processes under faults on two
# Apache Kafka clusters (docs/testing.md, "The chaos suite"). STRAIT_CHAOS=0 skips it; the
# rolling upgrade starts on an older build when this clone has its commit.
if [ "${STRAIT_CHAOS:-1}" != 0 ]; then
  down "$base"
  old=$(scripts/chaos-old.sh)
  target/debug/strait-chaos --profile ci --broker kafka --dir "$base/chaos" ${old:+--old-strait "$old"}
  # The same scenarios with the flow exactly-once (on this build only: an
  # older one may not know the setting), judged by Kafka's read_committed.
  target/debug/strait-chaos --profile ci --broker kafka --exactly-once --dir "$base/chaos-eos"
fi
