#!/usr/bin/env bash
# One Apache Kafka cluster: a single KRaft node that is broker and
# controller, from the jars compose/sandbox.sh installs. Formats DIR and
# then becomes the broker (exec), so whoever started this script holds the
# JVM's pid and stops it with a signal.
#
#   compose/kafka.sh DIR PORT [ADVERTISED_PORT]
#
# PORT is where clients connect. ADVERTISED_PORT (default PORT) is what
# metadata tells them: the chaos suite puts a fault proxy there. Brokers
# reach themselves (transaction markers) on a listener of their own, never
# through that proxy.
#
# Environment: STRAIT_KAFKA_LIB (the jars; default
# ~/.cache/strait/kafka-4.3.1/lib), STRAIT_KAFKA_HEAP (default 1g),
# STRAIT_KAFKA_PROPS (more server.properties lines, newline-separated).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir=${1:?usage: kafka.sh DIR PORT [ADVERTISED_PORT]}
port=${2:?usage: kafka.sh DIR PORT [ADVERTISED_PORT]}
adv=${3:-$port}
lib="${STRAIT_KAFKA_LIB:-${STRAIT_TOOLS:-$HOME/.cache/strait}/kafka-4.3.1/lib}"
[ -d "$lib" ] || { echo "kafka.sh: no Kafka jars at $lib; run compose/sandbox.sh install" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(free_port); iport=$(free_port)
mkdir -p "$dir"
rm -rf "$dir/data"
cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=CLIENT://127.0.0.1:$port,INTERNAL://127.0.0.1:$iport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=CLIENT://127.0.0.1:$adv,INTERNAL://127.0.0.1:$iport
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Tests write records with fixed timestamps from the past; time retention
# would delete them at the first retention check.
log.retention.ms=-1
# Topics are created on purpose (strait creates remote topics itself): a
# produce to a missing topic is an error, as on most production clusters.
auto.create.topics.enable=false
# ACLs are stored and served (ACL sync); over PLAINTEXT every client is
# ANONYMOUS, a super user, so nothing is denied.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=true
${STRAIT_KAFKA_PROPS:-}
PROPS
cp "$here/kafka/log4j2.properties" "$dir/log4j2.properties"
log4j="-Dlog4j2.configurationFile=$dir/log4j2.properties"
# 22 characters of URL-safe base64 of 16 random bytes.
id=$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(16)).decode()[:22])')
java -Xmx256m $log4j -cp "$lib/*" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
  || { echo "kafka.sh: format failed:" >&2; cat "$dir/format.log" >&2; exit 1; }
heap=${STRAIT_KAFKA_HEAP:-1g}
exec java -Xms256m -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true $log4j -cp "$lib/*" kafka.Kafka "$dir/server.properties"
