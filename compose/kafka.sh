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
# STRAIT_KAFKA_PROPS (more server.properties lines, newline-separated),
# STRAIT_KAFKA_KEEP=1 (start again on the data of the last run in DIR).
#
# Secured clusters (docs/security.md), STRAIT_KAFKA_SECURITY:
#   plaintext  (default) every client is ANONYMOUS, a super user;
#   sasl_ssl   clients log in with SCRAM-SHA-512 over TLS;
#   mtls       clients present a certificate (ssl.client.auth=required),
#              their principal is its CN.
# Both enforce ACLs (allow.everyone.if.no.acl.found=false) with one super
# user, `admin`, which the broker itself is on its internal and controller
# listeners. They need STRAIT_KAFKA_PKI, a directory with `ca.crt` and
# `broker.pem` (the broker's key and certificate, CN=admin, for
# 127.0.0.1, signed by ca.crt), and STRAIT_KAFKA_ADMIN_PASSWORD; sasl_ssl
# also STRAIT_KAFKA_SCRAM_USERS, "name=password ..." (admin is added).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir=${1:?usage: kafka.sh DIR PORT [ADVERTISED_PORT]}
port=${2:?usage: kafka.sh DIR PORT [ADVERTISED_PORT]}
adv=${3:-$port}
lib="${STRAIT_KAFKA_LIB:-${STRAIT_TOOLS:-$HOME/.cache/strait}/kafka-4.3.1/lib}"
[ -d "$lib" ] || { echo "kafka.sh: no Kafka jars at $lib; run compose/sandbox.sh install" >&2; exit 1; }
# N free ports at once, distinct from each other and from the ports given
# as arguments (each socket is held until all are chosen: ports picked one
# call at a time can come back the same).
free_ports() { # N [PORT...]
  python3 - "$@" <<'PY'
import socket, sys
n, taken = int(sys.argv[1]), {int(p) for p in sys.argv[2:]}
held, out = [], []
while len(out) < n:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); held.append(s)
    p = s.getsockname()[1]
    if p not in taken:
        taken.add(p); out.append(p)
print(" ".join(map(str, out)))
PY
}
mkdir -p "$dir"
# STRAIT_KAFKA_KEEP=1 starts the node again on the data and ports of its
# last run in DIR (a cluster that failed and came back); otherwise DIR
# starts empty.
keep=""
if [ "${STRAIT_KAFKA_KEEP:-}" = 1 ] && [ -f "$dir/data/meta.properties" ] && [ -f "$dir/ports" ]; then
  keep=1
  read -r cport iport <"$dir/ports"
else
  # STRAIT_KAFKA_PORTS="CONTROLLER INTERNAL": ports chosen by a caller that
  # starts several nodes at once, so that no two pick the same.
  if [ -n "${STRAIT_KAFKA_PORTS:-}" ]; then
    read -r cport iport <<<"$STRAIT_KAFKA_PORTS"
  else
    read -r cport iport < <(free_ports 2 "$port" "$adv")
  fi
  rm -rf "$dir/data"
  echo "$cport $iport" >"$dir/ports"
fi
security=${STRAIT_KAFKA_SECURITY:-plaintext}
scram=()
case "$security" in
  plaintext)
    protocols="CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
    # ACLs are stored and served (ACL sync); over PLAINTEXT every client is
    # ANONYMOUS, a super user, so nothing is denied.
    auth="super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=true" ;;
  sasl_ssl|mtls)
    pki=${STRAIT_KAFKA_PKI:?kafka.sh: $security needs STRAIT_KAFKA_PKI}
    pw=${STRAIT_KAFKA_ADMIN_PASSWORD:?kafka.sh: $security needs STRAIT_KAFKA_ADMIN_PASSWORD}
    for f in ca.crt broker.pem; do
      [ -f "$pki/$f" ] || { echo "kafka.sh: no $pki/$f" >&2; exit 1; }
    done
    tls="ssl.keystore.type=PEM
ssl.keystore.location=$pki/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$pki/ca.crt
ssl.endpoint.identification.algorithm="
    auth="super.users=User:admin
allow.everyone.if.no.acl.found=false
$tls" ;;
  *) echo "kafka.sh: STRAIT_KAFKA_SECURITY=$security: not plaintext, sasl_ssl or mtls" >&2; exit 1 ;;
esac
case "$security" in
  sasl_ssl)
    # Clients: SCRAM over TLS. The broker to itself: SCRAM as admin
    # (inter-broker) and PLAIN as admin (the controller listener, where
    # KRaft cannot check SCRAM: its credentials live in the metadata log).
    protocols="CLIENT:SASL_SSL,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    auth="$auth
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.internal.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$pw\";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"$pw\" user_admin=\"$pw\";"
    scram+=(--add-scram "SCRAM-SHA-512=[name=admin,password=$pw]")
    for u in ${STRAIT_KAFKA_SCRAM_USERS:-}; do
      scram+=(--add-scram "SCRAM-SHA-512=[name=${u%%=*},password=${u#*=}]")
    done ;;
  mtls)
    # Every listener asks for a certificate; a principal is its CN.
    protocols="CLIENT:SSL,INTERNAL:SSL,CONTROLLER:SSL"
    auth="$auth
ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+).*\$/\$1/,DEFAULT" ;;
esac
cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=CLIENT://127.0.0.1:$port,INTERNAL://127.0.0.1:$iport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=CLIENT://127.0.0.1:$adv,INTERNAL://127.0.0.1:$iport
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=$protocols
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
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
$auth
${STRAIT_KAFKA_PROPS:-}
PROPS
cp "$here/kafka/log4j2.properties" "$dir/log4j2.properties"
log4j="-Dlog4j2.configurationFile=$dir/log4j2.properties"
# 22 characters of URL-safe base64 of 16 random bytes.
id=$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(16)).decode()[:22])')
[ -n "$keep" ] || java -Xmx256m $log4j -cp "$lib/*" kafka.tools.StorageTool format --cluster-id="$id" -c "$dir/server.properties" "${scram[@]}" >"$dir/format.log" 2>&1 \
  || { echo "kafka.sh: format failed:" >&2; cat "$dir/format.log" >&2; exit 1; }
heap=${STRAIT_KAFKA_HEAP:-1g}
exec java -Xms256m -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true $log4j -cp "$lib/*" kafka.Kafka "$dir/server.properties"
