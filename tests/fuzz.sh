#!/usr/bin/env bash
# Fuzzes faultline-core's ingest codecs (fuzz/fuzz_targets/) for a bounded time per target.
#
# Usage: tests/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 30
#   TARGET              default: every target (envelope body json_check)
#
# Only stable Rust is installed; cargo-fuzz needs unstable compiler flags (sanitizers, coverage
# instrumentation), which RUSTC_BOOTSTRAP=1 unlocks on stable. The build goes to its own target
# dir ($FAULTLINE_FUZZ_TARGET_DIR, default /var/tmp/faultline-fuzz-target: outside the clone,
# so repeated runs from fresh clones stay quick), never fighting the workspace build.
# A crash leaves its input in fuzz/artifacts/<target>/ and makes this script fail; reproduce it
# with: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file> (from fuzz/).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-30}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(envelope body json_check)
fi
case "$seconds" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FAULTLINE_FUZZ_TARGET_DIR:-/var/tmp/faultline-fuzz-target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd "$root/fuzz"
logs="$root/fuzz/target/logs"
mkdir -p "$logs"

echo "==> building fuzz targets (release, AddressSanitizer)"
cargo fuzz build

summary=()
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus" "artifacts/$target"
    # Seed the corpus with the committed inputs; keep what earlier runs found.
    for seed in "seeds/$target"/*; do
        [ -e "$seed" ] || continue
        [ -e "$corpus/$(basename "$seed")" ] || cp "$seed" "$corpus/"
    done

    echo "==> fuzzing $target for ${seconds}s"
    log="$logs/$target.log"
    # -rss_limit_mb: a decompression bomb that escaped its limit would show up as an OOM.
    # -timeout: a single input taking seconds means something quadratic.
    if ! cargo fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" \
        -timeout=10 \
        -rss_limit_mb=1024 \
        -artifact_prefix="artifacts/$target/" \
        -print_final_stats=1 2>&1 | tee "$log"; then
        echo "!! $target failed; see $log and fuzz/artifacts/$target/" >&2
        exit 1
    fi
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    rate="$(sed -n 's/.*exec\/s: *\([0-9]*\).*/\1/p' <<<"$done_line")"
    summary+=("$target: ${runs:-?} runs in ${seconds}s, ${rate:-?} exec/s ($done_line)")
done

echo "==> summary"
printf '%s\n' "${summary[@]}"
