#!/usr/bin/env bash
# Checks deploy/ offline: every kustomize overlay renders and validates against the
# Kubernetes schemas (strict, pinned version), and checkov passes on the Dockerfile,
# the manifests and the rendered overlays (skips are annotated with their reason);
# hadolint passes on the Dockerfile.
# Needs kubectl, kubernetes-validate, checkov and hadolint on PATH (or TOOLS_BIN=<venv>/bin).
set -euo pipefail
cd "$(dirname "$0")"
BIN="${TOOLS_BIN:+$TOOLS_BIN/}"
K8S_VERSION=1.31.0
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for overlay in single scaled dev; do
  kubectl kustomize "k8s/overlays/$overlay" >"$OUT/$overlay.yaml"
  "${BIN}kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$OUT/$overlay.yaml"
  echo "deploy: overlay $overlay renders and validates ($(grep -c '^kind:' "$OUT/$overlay.yaml") objects)"
done
# The optional ServiceMonitor is a CRD: kubernetes-validate has no schema for it, so it
# is only checked to render.
kubectl kustomize k8s/components/servicemonitor >/dev/null
"${BIN}checkov" -d . --compact --quiet
echo "deploy: checkov passed"
"${BIN}hadolint" Dockerfile
echo "deploy: hadolint passed"
