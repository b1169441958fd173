#!/usr/bin/env python3
"""Offline checks of deploy/kubernetes: renders each kustomization (base and
overlays) with the subset of kustomize they use (resources, namespace,
labels, images, replicas), validates every rendered resource against the
Kubernetes schemas with kubernetes-validate (--strict), checks the
invariants strait relies on, and writes the ConfigMap's strait.toml out for
`strait check`.

usage: check-deploy.py DEPLOY_DIR OUT_DIR
"""
import copy
import os
import subprocess
import sys

import yaml


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def render(dirpath):
    """Resources of the kustomization in dirpath, transformed."""
    with open(os.path.join(dirpath, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    known = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "replicas"}
    unknown = set(k) - known
    if unknown:
        sys.exit(f"{dirpath}: kustomization fields this check does not render: {sorted(unknown)}")
    out = []
    for r in k.get("resources", []):
        p = os.path.normpath(os.path.join(dirpath, r))
        out += render(p) if os.path.isdir(p) else load_docs(p)
    out = copy.deepcopy(out)
    for doc in out:
        if "namespace" in k:
            doc["metadata"]["namespace"] = k["namespace"]
        for entry in k.get("labels", []):
            doc["metadata"].setdefault("labels", {}).update(entry["pairs"])
        spec = doc.get("spec", {})
        for c in spec.get("template", {}).get("spec", {}).get("containers", []):
            for img in k.get("images", []):
                name = c["image"].split(":")[0]
                if name == img["name"]:
                    c["image"] = f"{img.get('newName', name)}:{img['newTag']}"
        for rep in k.get("replicas", []):
            if doc["metadata"]["name"] == rep["name"] and "replicas" in spec:
                spec["replicas"] = rep["count"]
    return out


def duration_s(text):
    assert text.endswith("s"), text
    return int(text[:-1])


def main():
    deploy, out_dir = sys.argv[1], sys.argv[2]
    kdir = os.path.join(deploy, "kubernetes")
    targets = [os.path.join(kdir, "base")]
    overlays = os.path.join(kdir, "overlays")
    targets += [os.path.join(overlays, o) for o in sorted(os.listdir(overlays))]
    failures = []
    for t in targets:
        docs = render(t)
        name = os.path.relpath(t, kdir).replace("/", "-")
        rendered = os.path.join(out_dir, f"{name}.yaml")
        with open(rendered, "w") as f:
            yaml.safe_dump_all(docs, f)
        r = subprocess.run(["kubernetes-validate", "--strict", "--quiet", rendered])
        if r.returncode != 0:
            failures.append(f"{t}: kubernetes-validate failed")
        by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        # What strait relies on.
        cm = by_kind[("ConfigMap", "strait-config")]
        toml_text = cm["data"]["strait.toml"]
        drain = 30
        for line in toml_text.splitlines():
            if line.strip().startswith("drain_timeout"):
                drain = duration_s(line.split("=")[1].split("#")[0].strip().strip('"'))
        for kind, n in [("Deployment", "strait-controller"), ("StatefulSet", "strait-worker")]:
            d = by_kind[(kind, n)]
            pod = d["spec"]["template"]["spec"]
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace <= drain:
                failures.append(f"{t}: {n}: terminationGracePeriodSeconds {grace} <= drain_timeout {drain}s")
            c = pod["containers"][0]
            if c["livenessProbe"]["httpGet"]["path"] != "/health" or c["readinessProbe"]["httpGet"]["path"] != "/ready":
                failures.append(f"{t}: {n}: probes must be /health and /ready")
            if "$(POD_NAME)" not in c["args"]:
                failures.append(f"{t}: {n}: --id must be the pod's name")
        if by_kind[("Deployment", "strait-controller")]["spec"]["replicas"] < 2:
            failures.append(f"{t}: fewer than 2 controllers")
        for n in ["strait-controller", "strait-worker"]:
            if ("PodDisruptionBudget", n) not in by_kind:
                failures.append(f"{t}: no PodDisruptionBudget {n}")
        with open(os.path.join(out_dir, f"{name}.strait.toml"), "w") as f:
            f.write(toml_text)
        print(f"check-deploy: {os.path.relpath(t, deploy)}: {len(docs)} resources rendered and validated")
    if failures:
        sys.exit("\n".join(failures))


main()
