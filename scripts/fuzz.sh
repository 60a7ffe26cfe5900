#!/usr/bin/env bash
# Fuzzes each cargo-fuzz target (all, or the TARGETs named) for SECONDS (default 60) or
# FUZZ_RUNS executions (default 10 million; issue 12's budget), whichever ends first, at low
# priority, then minimises each corpus (`cargo fuzz cmin`) and prints the executions per target.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Two invocations with disjoint targets can run side by side (one per core). FUZZ_PREBUILT=1
# runs the binaries a `cargo +nightly fuzz build` left, so source edits during a long campaign
# do not trigger a rebuild (an ASan build of tether takes many minutes on 2 cores). Needs the nightly
# toolchain; installs cargo-fuzz from crates.io if missing. Exits 1 if any target crashed: the
# input is in fuzz/artifacts/<target>/; once fixed, keep it in fuzz/regressions/<target>/ so
# tests/fuzz_corpus.rs replays it on stable.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
shift || true
runs="${FUZZ_RUNS:-10000000}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

logs=target/fuzz-logs
prebuilt=target/$(rustc -vV | awk '/^host:/{print $2}')/release
mkdir -p "$logs"
summary=()
crashed=()
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
for target in "${targets[@]}"; do
  echo "== $target: ${seconds}s"
  corpus=(corpus/"$target")
  [ -d regressions/"$target" ] && corpus+=(regressions/"$target")
  mkdir -p corpus/"$target"
  # -timeout: one input running this long is a hang worth a report (the HTTP target caps
  # itself at 5 s); -print_final_stats gives the execution count parsed below.
  run=(cargo +nightly fuzz run "$target" "${corpus[@]}" --)
  [ "${FUZZ_PREBUILT:-0}" = 1 ] && run=("$prebuilt/$target" -artifact_prefix=artifacts/"$target"/ "${corpus[@]}")
  mkdir -p artifacts/"$target"
  if nice -n 10 "${run[@]}" \
    -max_total_time="$seconds" -runs="$runs" -timeout=25 -print_final_stats=1 >"$logs/$target.log" 2>&1; then
    status=ok
  else
    status=CRASHED
    crashed+=("$target")
    grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written" "$logs/$target.log" | head -5 || true
  fi
  execs=$(grep -oE '^stat::number_of_executed_units: [0-9]+' "$logs/$target.log" | awk '{print $2}' | tail -1)
  if [ -z "$execs" ]; then
    # libFuzzer's last status line, `#N DONE ...` (or the last `#N ...` before a crash).
    execs=$(grep -oE '^#[0-9]+' "$logs/$target.log" | tail -1 | tr -d '#')
  fi
  if [ "${FUZZ_PREBUILT:-0}" = 1 ]; then
    # cmin's own merge, with the prebuilt binary: the minimised set replaces the corpus.
    rm -rf "$logs/$target.min" && mkdir -p "$logs/$target.min"
    if nice -n 10 "$prebuilt/$target" -merge=1 -timeout=25 "$logs/$target.min" corpus/"$target" >"$logs/$target.cmin.log" 2>&1; then
      rm -rf corpus/"$target" && mv "$logs/$target.min" corpus/"$target"
    else
      echo "   cmin failed: $logs/$target.cmin.log"
    fi
  else
    nice -n 10 cargo +nightly fuzz cmin "$target" >"$logs/$target.cmin.log" 2>&1 || echo "   cmin failed: $logs/$target.cmin.log"
  fi
  files=$(find corpus/"$target" -type f | wc -l)
  # libFuzzer's closing `Done N runs in S second(s)`.
  secs=$(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "$logs/$target.log" | awk '{print $5}' | tail -1)
  summary+=("$(printf '%-16s %-8s %12s executions in %5ss  %5s corpus files' "$target" "$status" "${execs:-?}" "${secs:-?}" "$files")")
done

echo
echo "target           status     executions (at most ${seconds}s or ${runs} each)"
printf '%s\n' "${summary[@]}"
if [ ${#crashed[@]} -gt 0 ]; then
  echo "crashed: ${crashed[*]} (inputs in fuzz/artifacts/, logs in fuzz/$logs/)"
  exit 1
fi
