#!/usr/bin/env bash
# Runs smolchat's fuzz targets on a stable toolchain: fuzz/run.sh SECONDS [TARGET...]
#
# Installs cargo-fuzz (pinned) when missing, runs the fuzz crate's own tests
# (the event-stream parser, and every corpus file replayed through its
# check), builds every target once, then fuzzes each named target (default:
# all) for SECONDS, up to `nproc` targets at a time. Each run starts from a
# temporary copy of fuzz/corpus/<target>, so the committed seeds are never
# rewritten. Prints the executions of each target; exits non-zero if any
# target crashed, naming the input and the command that reproduces it.
#
# Without a sanitizer (the default) cargo-fuzz passes rustc only stable -C
# flags, so a stable toolchain builds the targets as it is; a sanitizer needs
# -Zsanitizer, which a stable rustc accepts under RUSTC_BOOTSTRAP=1, set here
# only then (docs/fuzzing.md). Environment:
#   FUZZ_SANITIZER  none (default) or address
#   FUZZ_JOBS       targets run at once (default: nproc)
#   FUZZ_NICE       niceness of the fuzzing processes (default 0)
#   FUZZ_RUNS       also stop each target after this many executions
#   FUZZ_WORKERS    libFuzzer processes per target, sharing its corpus
#                   (default 1); FUZZ_RUNS is split between them
#   FUZZ_CODEGEN_UNITS  codegen units of the build (default 16: a cold build
#                   in 219 s instead of 267 s; cargo-fuzz's own default, 1,
#                   makes slightly faster fuzzers for long runs)
set -euo pipefail
cd "$(dirname "$0")"

CARGO_FUZZ_VERSION=0.13.2
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
all=(head chunked body transform sse config)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-$(nproc)}
nice_level=${FUZZ_NICE:-0}
workers=${FUZZ_WORKERS:-1}
cgu=${FUZZ_CODEGEN_UNITS:-16}
runs_limit=()
[ -z "${FUZZ_RUNS:-}" ] || runs_limit=(-runs="$(((FUZZ_RUNS + workers - 1) / workers))")
# Only where needed: under RUSTC_BOOTSTRAP=1, build scripts that probe for
# nightly features (anyhow's, for one) find them and turn them on.
[ "$sanitizer" = none ] || export RUSTC_BOOTSTRAP=1

# Inputs longer than libFuzzer's default 4096 bytes: a head may use all of
# its 8 KiB and still have a body behind it.
max_len() {
    case $1 in
        head) echo 10000 ;;
        *) echo 4096 ;;
    esac
}

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

echo "== fuzz crate tests (event-stream parser, corpus replay)"
# In the main crate's target directory: smolchat and its dependencies are
# then the debug builds `cargo test` made already (CI saves ~35 s).
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-../target} cargo test --quiet --locked

build_start=$(date +%s)
# --no-default-features: smolchat without redis and the terminal client,
# which no target reaches (fuzz/Cargo.toml).
flags=(--sanitizer "$sanitizer" --codegen-units "$cgu" --no-default-features)
echo "== cargo fuzz build ${flags[*]}"
cargo fuzz build "${flags[@]}"
echo "== built in $(($(date +%s) - build_start)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run_one() {
    local t=$1 w=$2
    # -timeout: an input that takes over 10 s is a hang, reported as a
    # crash; the transforms promise linear time. Workers of one target share
    # its corpus (libFuzzer reloads it every second).
    nice -n "$nice_level" cargo fuzz run "${flags[@]}" "$t" "$work/$t/corpus" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 \
        -artifact_prefix="$work/$t/artifacts/" -print_final_stats=1 "${runs_limit[@]}" \
        >"$work/$t/log.$w" 2>&1
}

echo "== fuzzing ${targets[*]} for $seconds s each, $workers worker(s) each, $jobs at a time"
pids=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
    cp corpus/"$t"/* "$work/$t/corpus/"
    for w in $(seq "$workers"); do
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
            wait -n || true
        done
        run_one "$t" "$w" &
        pids+=("$!:$t")
    done
done

declare -A status
for p in "${pids[@]}"; do
    t=${p#*:}
    wait "${p%%:*}" || status[$t]=failed
done

failed=0
for t in "${targets[@]}"; do
    runs=0
    secs=0
    for log in "$work/$t"/log.*; do
        n=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo 0)
        s=$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -Eo 'in [0-9]+' | grep -Eo '[0-9]+' || echo 0)
        runs=$((runs + n))
        [ "$s" -le "$secs" ] || secs=$s
    done
    crashes=$(find "$work/$t/artifacts" -type f | wc -l)
    # A run that stops on a crash prints no "Done ... in N seconds".
    if [ "$secs" -gt 0 ]; then
        rate="$secs s ($((runs / secs))/s)"
    else
        rate="? s"
    fi
    printf '%-10s %12s executions in %s, %s crash file(s)\n' "$t" "$runs" "$rate" "$crashes"
    if [ -n "${status[$t]:-}" ] || [ "$crashes" -gt 0 ]; then
        failed=1
        mkdir -p artifacts/"$t"
        cp "$work/$t/artifacts/"* artifacts/"$t"/ 2>/dev/null || true
        # The panic message, else (a timeout, an out-of-memory) libFuzzer's summary.
        log=$(grep -l -E 'panicked at|ERROR: libFuzzer' "$work/$t"/log.* | head -n 1 || true)
        log=${log:-$work/$t/log.1}
        grep -A4 -m1 'panicked at' "$log" | sed "s|^|    $t: |" ||
            grep -B2 -A2 -m1 -E '^(SUMMARY|==[0-9]+== ERROR)' "$log" | sed "s|^|    $t: |" ||
            tail -n 20 "$log" | sed "s|^|    $t: |"
        for f in artifacts/"$t"/*; do
            [ -e "$f" ] || continue
            echo "    crash input: fuzz/$f"
            echo "    reproduce:   cd fuzz && ${RUSTC_BOOTSTRAP:+RUSTC_BOOTSTRAP=1 }cargo fuzz run ${flags[*]} $t $f"
        done
        [ -n "$(ls artifacts/"$t" 2>/dev/null)" ] || echo "    $t failed and left no input; see the log above"
    fi
done
exit $failed
