#!/usr/bin/env bash
# Installs what building and testing strait needs on a fresh Debian machine
# with a Rust toolchain: C build tools and headers for librdkafka (built
# from source by rdkafka-sys), protoc for etcd-client, then the sandbox's tansu and etcd.
# Idempotent: installs only what is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

need=()
# protobuf-compiler: etcd-client generates its gRPC code with protoc;
# libprotobuf-dev: the well-known types it imports (google/protobuf/*.proto),
# only a recommendation of protobuf-compiler, so not there without it.
for pkg in build-essential pkg-config libssl-dev zlib1g-dev protobuf-compiler libprotobuf-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# `--tests`: also what only the tests need. deploy/ checks: promtool and a
# Prometheus server (tests/observability.rs), systemd-analyze for the units.
tests=false; [ "${1:-}" = --tests ] && tests=true
if $tests; then
  dpkg -s prometheus >/dev/null 2>&1 || need+=(prometheus)
  command -v systemd-analyze >/dev/null || need+=(systemd)
  # openssl makes the certificates of the etcd TLS tests.
  command -v openssl >/dev/null || need+=(openssl)
fi
# Apache Kafka's broker and MirrorMaker 2 run from their published jars:
# a JDK to run them and to compile the tests' MirrorMaker 2 client
# (tests/mm2_client/Mm2Client.java, built by testkit's mm2 module with
# javac), Maven to fetch them (compose/kafka/pom.xml).
command -v java >/dev/null && command -v javac >/dev/null || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need+=(maven)
# tansu installs into a venv: any python3 with venv and ensurepip will do.
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "deps: cargo not found; install a Rust toolchain (rustup)" >&2; exit 1; }
# The style checks of scripts/test.sh.
for c in fmt clippy; do
  cargo "$c" --version >/dev/null 2>&1 || { echo "deps: cargo $c not found; rustup component add ${c/fmt/rustfmt}" >&2; exit 1; }
done
# The brokers (Apache Kafka's jars, tansu), etcd, and the independent
# Kafka clients of the tests (kafka-python with lz4, in a venv).
"$here/compose/sandbox.sh" install
# kubernetes-validate checks the Kubernetes manifests offline against the
# Kubernetes schemas (scripts/check-deploy.sh).
deploy="${STRAIT_TOOLS:-$HOME/.cache/strait}/venv-deploy"
if $tests && ! "$deploy/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
  echo "deps: installing kubernetes-validate into $deploy" >&2
  python3 -m venv "$deploy"
  "$deploy/bin/pip" install -q --disable-pip-version-check kubernetes-validate
fi
