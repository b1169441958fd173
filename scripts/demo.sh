#!/usr/bin/env bash
# The demo: starts two local Apache Kafka 4.3.1 clusters (one KRaft node
# each, from the published jars; STRAIT_BROKER=tansu for tansu), runs strait between
# them, writes sample records to the source and shows them arriving on the
# target. `scripts/demo.sh --keep` leaves everything running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false; [ "${1:-}" = "--keep" ] && keep=true

scripts/deps.sh
# The demo's own clusters, fresh each time (the tests use compose/.sandbox).
export STRAIT_SANDBOX_DIR="$PWD/compose/.sandbox/demo"
compose/sandbox.sh down >/dev/null 2>&1 || true
compose/sandbox.sh up >/dev/null
. "$STRAIT_SANDBOX_DIR/env"
run="$STRAIT_SANDBOX_DIR"
echo "== clusters ($BROKER): us (source) at $SOURCE_BOOTSTRAP, dr (target) at $TARGET_BOOTSTRAP"

echo "== building strait (release)"
cargo build --release --quiet --bin strait --example demo_client
bin=target/release
metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > $run/strait.toml <<TOML
deployment = "demo"
[clusters.us]
bootstrap = "$SOURCE_BOOTSTRAP"
[clusters.dr]
bootstrap = "$TARGET_BOOTSTRAP"
[[flows]]
source = "us"
target = "dr"
topics = ["orders", "payments"]
[discovery]
interval = "2s"
[metrics]
listen = "127.0.0.1:$metrics_port"
TOML

echo "== writing 1000 records to 'orders' (3 partitions) on us"
$bin/examples/demo_client produce "$SOURCE_BOOTSTRAP" orders 3 1000

echo "== starting strait: strait run --config $run/strait.toml (log: $run/strait.log)"
$bin/strait run --config $run/strait.toml > $run/strait.log 2>&1 &
strait_pid=$!
stop() {
  if kill -0 $strait_pid 2>/dev/null; then kill -TERM $strait_pid; wait $strait_pid || true; fi
  compose/sandbox.sh down >/dev/null 2>&1 || true
}
$keep || trap stop EXIT

echo "== reading 'us.orders' on dr as strait replicates it"
$bin/examples/demo_client tail "$TARGET_BOOTSTRAP" us.orders 3 1000 60

echo "== a topic created while strait runs: 'payments' (2 partitions), 200 records"
$bin/examples/demo_client produce "$SOURCE_BOOTSTRAP" payments 2 200
$bin/examples/demo_client tail "$TARGET_BOOTSTRAP" us.payments 2 200 60

echo "== metrics at http://127.0.0.1:$metrics_port/metrics, for example:"
sleep 2 # let the next metrics tick publish the lag and unit gauges
curl -s "http://127.0.0.1:$metrics_port/metrics" | grep -E '^strait_(records_replicated_total|bytes_replicated_total|units\{.*running|offset_syncs_emitted_total|topics_created_total|lag_records|heartbeat_age_seconds)' || true
if $keep; then
  echo "== still running (--keep): strait pid $strait_pid; stop with: kill $strait_pid; STRAIT_SANDBOX_DIR=$STRAIT_SANDBOX_DIR compose/sandbox.sh down"
else
  echo "== stopping strait (SIGTERM drains and commits) and the clusters"
fi
