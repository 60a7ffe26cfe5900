#!/usr/bin/env bash
# Renders deploy/manifests/tether.yaml (or the file given) from the Helm chart; a test checks
# that the committed file is exactly this render.
set -euo pipefail
cd "$(dirname "$0")/.."
helm="${TETHER_HELM:-target/tools/helm/bin/helm}"
out="${1:-deploy/manifests/tether.yaml}"
{
  cat <<'HEAD'
# tether as an ingress controller, rendered from deploy/helm/tether by deploy/render-manifests.sh
# (namespace `tether`, default values, no cookie-key Secret). Create the Secret once, before the
# Deployment starts; all replicas share it:
#   kubectl create namespace tether
#   kubectl -n tether create secret generic tether-cookie-key --from-literal=current=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
#   kubectl apply -f deploy/manifests/tether.yaml
HEAD
  "$helm" template tether deploy/helm/tether --namespace tether \
    --set namespace.create=true --set cookieKey.create=false
} > "$out"
