#!/usr/bin/env bash
# Static checks of everything under deploy/ (run by scripts/test.sh; the
# dashboard and alert expressions are also evaluated against a real
# Prometheus scraping strait, in tests/observability.rs):
#  - Prometheus rules: promtool check rules, and promtool test rules
#    (each alert fires on the series that should raise it);
#  - Kubernetes: each kustomization rendered and validated offline against
#    the Kubernetes schemas (kubernetes-validate --strict), the ConfigMap's
#    strait.toml through `strait check`;
#  - systemd: systemd-analyze verify (no warning allowed) and the
#    offline security exposure of each unit.
set -euo pipefail
cd "$(dirname "$0")/.."
strait="${STRAIT_BIN:-$PWD/target/debug/strait}"
venv="${STRAIT_TOOLS:-$HOME/.cache/strait}/venv-deploy"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

promtool check rules deploy/prometheus/strait-alerts.yml
(cd deploy/prometheus && promtool test rules strait-alerts.test.yml)

PATH="$venv/bin:$PATH" "$venv/bin/python" scripts/check-deploy.py deploy "$out"
for cfg in "$out"/*.strait.toml; do
  # The secrets and the pod's address come from the environment there.
  US_SASL_PASSWORD=x STRAIT_API_TOKEN=y POD_IP=10.0.0.1 "$strait" check --config "$cfg" >/dev/null
done
echo "check-deploy: the ConfigMaps' strait.toml pass strait check"

# systemd-analyze checks that ExecStart exists: point the units at this build.
mkdir -p "$out/systemd"
for unit in deploy/systemd/*.service; do
  sed "s|/usr/local/bin/strait|$strait|g" "$unit" >"$out/systemd/$(basename "$unit")"
done
warnings=$(systemd-analyze verify "$out"/systemd/*.service 2>&1 || true)
if [ -n "$warnings" ]; then
  echo "$warnings" >&2
  echo "check-deploy: systemd-analyze verify reported the above" >&2
  exit 1
fi
for unit in "$out"/systemd/*.service; do
  level=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
  echo "check-deploy: $(basename "$unit"): systemd exposure $level"
  awk -v l="$level" 'BEGIN { exit !(l != "" && l <= 2.0) }' || { echo "check-deploy: exposure above 2.0" >&2; exit 1; }
done
echo "check-deploy: ok"
