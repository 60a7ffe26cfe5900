#!/usr/bin/env bash
# A profile-guided release build of tether (rustc's -Cprofile-generate / -Cprofile-use).
#   1. an instrumented release build;
#   2. it serves the traffic of bench/tether.sh and bench/tls.sh, against tether alone and
#      shortened (one round of 3 s per scenario, about 2 minutes): sticky hits, new sessions,
#      16 KiB responses, 1 MiB uploads, two workers, TLS handshakes and keep-alive, HTTP/2
#      over TLS and in clear text, with the bench's pods (nginx);
#   3. the profile it leaves is merged by the toolchain's llvm-profdata;
#   4. the release build again, its code laid out and inlined by what that traffic did.
# The binary lands in target/pgo/tether (its profile beside it); the script prints its path:
#   TETHER_BIN=$(scripts/pgo-build.sh) bench/tether.sh
# Installs rustup's llvm-tools component, and the bench's Debian packages, if missing. Takes
# about twice a release build and the traffic. Separate target directories keep both builds
# from invalidating target/release.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
out=$ROOT/target/pgo
work=$(mktemp -d /tmp/tether-pgo.XXXXXX)
trap 'rm -rf "$work"' EXIT

host=$(rustc -vV | awk '/^host:/{print $2}')
profdata=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata
[[ -x $profdata ]] || rustup component add llvm-tools >&2

build() { # RUSTFLAGS TARGET_DIR
  # (--target: the flags then reach tether's code only, not build scripts and proc macros.)
  (cd "$ROOT" && RUSTFLAGS="$1" cargo build --release --locked --bin tether --target "$host" --target-dir "$2" >&2)
}

# (A fixed place for the raw profile: the flags stay the same, so a second run rebuilds only
# what changed.)
raw=$ROOT/target/pgo-generate/profraw
rm -rf "$raw"
build "-Cprofile-generate=$raw" "$ROOT/target/pgo-generate"
echo "pgo: training on the bench's traffic" >&2
(
  export TETHER_BIN=$ROOT/target/pgo-generate/$host/release/tether RESULTS_DIR=$work/results ROUNDS=1 DURATION=3s WARMUP=1s
  TARGETS=direct "$ROOT/bench/tether.sh" >&2
  TARGETS=tether "$ROOT/bench/tls.sh" >&2
)
ls "$raw"/*.profraw >/dev/null 2>&1 || { echo "pgo: the instrumented tether left no profile" >&2; exit 1; }
"$profdata" merge -o "$work/tether.profdata" "$raw"
build "-Cprofile-use=$work/tether.profdata" "$ROOT/target/pgo-use"
mkdir -p "$out"
cp "$ROOT/target/pgo-use/$host/release/tether" "$work/tether.profdata" "$out/"
echo "$out/tether"
