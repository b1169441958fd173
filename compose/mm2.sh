#!/usr/bin/env bash
# Apache Kafka's own MirrorMaker 2 in dedicated mode, from the jars
# compose/sandbox.sh installs: the real thing strait is tested against
# (tests/mm2_interop.rs). Becomes the JVM (exec), so whoever started this
# script holds its pid and stops it with a signal (SIGTERM: a clean stop,
# Connect commits its source offsets).
#
#   compose/mm2.sh PROPERTIES [TARGET_ALIAS...]
#
# Runs the herders whose target is one of TARGET_ALIAS (`--clusters`), by
# default every cluster the file names. Logs to stdout (log4j2 at INFO, as
# the sandbox's brokers).
#
# Environment: STRAIT_KAFKA_LIB (the jars; default
# ~/.cache/strait/kafka-4.3.1/lib), STRAIT_MM2_HEAP (default 512m: two
# clusters, etcd, strait and MirrorMaker 2 share a 2-core test machine).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
props=${1:?usage: mm2.sh PROPERTIES [TARGET_ALIAS...]}
shift
lib="${STRAIT_KAFKA_LIB:-${STRAIT_TOOLS:-$HOME/.cache/strait}/kafka-4.3.1/lib}"
[ -d "$lib" ] || { echo "mm2.sh: no Kafka jars at $lib; run compose/sandbox.sh install" >&2; exit 1; }
[ -f "$props" ] || { echo "mm2.sh: no properties file $props" >&2; exit 1; }
clusters=()
[ $# -gt 0 ] && clusters=(--clusters "$@")
heap=${STRAIT_MM2_HEAP:-512m}
exec java -Xms128m -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
  -cp "$lib/*" org.apache.kafka.connect.mirror.MirrorMaker "$props" "${clusters[@]}"
