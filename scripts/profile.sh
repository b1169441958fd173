#!/usr/bin/env bash
# Where strait's CPU goes at full speed: writes a backlog to the sandbox's
# source cluster, starts the release build of strait on it with its default
# settings, records the strait process with perf (call graphs) until the
# backlog is replicated, then prints strait's CPU seconds per MB and the
# largest costs: by library, by function (self), and by function with
# what it calls (children).
#
#   compose/sandbox.sh up
#   scripts/profile.sh [RECORDS] [SIZE] [PARTITIONS]     (500000 1024 6)
#
# Output and perf.data go to $STRAIT_PROFILE_DIR (target/profile). perf
# itself costs CPU: the CPU seconds per MB printed here are above what
# `cargo bench --bench memory` reports for the same load.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-500000}
size=${2:-1024}
parts=${3:-6}
env_file=${STRAIT_SANDBOX:-compose/.sandbox/env}
[ -f "$env_file" ] || { echo "profile: no sandbox at $env_file; run compose/sandbox.sh up" >&2; exit 1; }
# shellcheck disable=SC1090
. "$env_file"
command -v perf >/dev/null || { echo "profile: perf not found (Debian: apt install linux-perf)" >&2; exit 1; }
out=${STRAIT_PROFILE_DIR:-target/profile}
mkdir -p "$out"
cargo build --release --quiet --bin strait --example load
topic="profile-$(date +%s)"
target/release/examples/load "$SOURCE_BOOTSTRAP" "$topic" "$parts" "$records" "$size"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$out/strait.toml" <<EOF
deployment = "$topic"
[clusters.src]
bootstrap = "$SOURCE_BOOTSTRAP"
[clusters.dst]
bootstrap = "$TARGET_BOOTSTRAP"
[[flows]]
source = "src"
target = "dst"
topics = ["$topic"]
[metrics]
listen = "127.0.0.1:$port"
EOF
replicated() {
  python3 - "$port" <<'PY'
import sys, urllib.request
try:
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read().decode()
except OSError:
    print(0); sys.exit()
print(int(sum(float(l.split()[-1]) for l in text.splitlines()
              if l.startswith("strait_records_replicated_total{"))))
PY
}
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# perf starts strait, so that every thread it makes is recorded (librdkafka
# starts its own threads after the process starts; `perf record -p` would
# miss them).
perf record -q -F 499 --call-graph dwarf,32768 -o "$out/perf.data" -- \
  target/release/strait run --config "$out/strait.toml" >"$out/strait.log" 2>&1 &
perf_pid=$!
pid=""
for _ in $(seq 100); do
  pid=$(pgrep -P "$perf_pid" -x strait || true)
  [ -n "$pid" ] && break
  sleep 0.1
done
[ -n "$pid" ] || { echo "profile: strait did not start; see $out/strait.log" >&2; exit 1; }
trap 'kill "$pid" 2>/dev/null || true' EXIT
ticks=$(getconf CLK_TCK)
start=$(date +%s.%N)
deadline=$(( $(date +%s) + 600 ))
until [ "$(replicated)" -ge "$records" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "profile: not replicated within 600 s; see $out/strait.log" >&2; exit 1; }
  kill -0 "$pid" 2>/dev/null || { echo "profile: strait exited; see $out/strait.log" >&2; exit 1; }
  sleep 0.2
done
end=$(date +%s.%N)
used=$(cpu "$pid")
kill -TERM "$pid"
wait "$perf_pid" || true
trap - EXIT
python3 - "$records" "$size" "$start" "$end" "$used" "$ticks" <<'PY'
import sys
records, size, start, end, used, ticks = map(float, sys.argv[1:])
mb = records * size / 1e6
secs = end - start
cpu = used / ticks
print(f"profile: {int(records)} records of about {int(size)} B ({mb:.0f} MB) in {secs:.1f} s "
      f"({mb / secs:.1f} MB/s, start-up included); strait used {cpu:.1f} CPU s, "
      f"{cpu / mb:.4f} CPU s per MB (under perf)")
PY
report() { perf report -i "$out/perf.data" --stdio --quiet "$@" 2>/dev/null; }
echo; echo "== by library (self) =="
report --no-children --sort dso --percent-limit 1 -g none | sed '/^$/d' | head -20
echo; echo "== by function (self) =="
report --no-children --sort symbol --percent-limit 1 -g none | sed '/^$/d' | head -30
echo; echo "== by function with what it calls (children), strait's own code =="
report --children --sort symbol --percent-limit 2 -g none | sed '/^$/d' | grep -vE 'inlined|catch_unwind|call_once|do_call|thread_start|clone3|start_thread' | cut -c1-160 | head -40
echo; echo "perf data: $out/perf.data (perf report -i $out/perf.data)"
