#!/usr/bin/env bash
# Runs smolchat's load benchmark set and prints a markdown table of medians
# against the targets of issue 7 (docs/performance.md); with --memory, the
# memory-budget set against its targets (docs/performance.md, "Memory budget").
#
#   scripts/bench.sh            # every scenario 5 times, medians (~6 min)
#   scripts/bench.sh --quick    # every scenario once, smaller (< 1 min once built)
#   scripts/bench.sh --runs 3   # another number of runs
#   scripts/bench.sh --memory   # the memory-budget set instead (~17 min):
#                               # fill 1024 rooms x 1000 x 4 KiB on the default
#                               # store and on :memory: (once each), and
#                               # missread (--runs times); with --quick,
#                               # 128 rooms x 200 and one missread
#   scripts/bench.sh --tls      # HTTPS against plain HTTP instead (~2 min):
#                               # handshakes/s and server CPU per connection
#                               # and per post, --runs times
#   scripts/bench.sh --compare  # against the axum + tokio peer instead
#                               # (benches/peer, built here; ~7 min, --quick
#                               # ~1.5 min): each load on smolchat, then on
#                               # the peer, --runs times; medians and ratios
#
# It builds the release binary and the loadgen example first (into
# $CARGO_TARGET_DIR when set). On a machine with two or more cores the
# server runs on core 0 and the load generator on core 1 (taskset), so they
# do not compete with each other. Raw JSON lines and the loadgen's
# summaries go to target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
runs=5
memory=0
tls=0
compare=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; runs=1 ;;
        --runs) runs="$2"; shift ;;
        --memory) memory=1 ;;
        --tls) tls=1 ;;
        --compare) compare=1 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "usage: scripts/bench.sh [--quick] [--runs N] [--memory | --tls | --compare]" >&2; exit 2 ;;
    esac
    shift
done

cargo build --release --quiet --bin smolchat --example loadgen
target_dir=${CARGO_TARGET_DIR:-target}
loadgen=$target_dir/release/examples/loadgen
smolchat=$target_dir/release/smolchat
peer=benches/peer/target/release/peer
if [ "$compare" = 1 ]; then
    # Its own crate, workspace and target directory: never part of
    # smolchat's build.
    cargo build --release --quiet --manifest-path benches/peer/Cargo.toml --target-dir benches/peer/target
fi
mkdir -p target/bench
stamp=$(date +%Y%m%d-%H%M%S)
out=target/bench/$stamp.jsonl
log=target/bench/$stamp.log
: > "$out"

pin=()
if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then
    pin=(--server-cpu 0 --loadgen-cpu 1)
fi

run() {
    local start=$SECONDS
    # Pinning flags first: anything after "--" goes to the server.
    if ! "$loadgen" "${pin[@]}" --server "$smolchat" "$@" >> "$out" 2>> "$log"; then
        echo "bench: loadgen $* failed; see $log" >&2
    fi
    echo "[$((SECONDS - start)) s] $(tail -n 1 "$log")" >&2
}

db=target/bench/bench.db
fresh_db() { rm -f "$db" "$db-wal" "$db-shm"; }

if [ "$quick" = 1 ]; then
    post_s=2; m100=300; m1000=500; paced=100; m10000=20; idle_s=3; slow_s=4; durable_s=2
else
    post_s=5; m100=1000; m1000=2000; paced=500; m10000=100; idle_s=10; slow_s=8; durable_s=5
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: $runs run(s) of each scenario; load average $load_start" >&2
if [ "$memory" = 1 ]; then
    if [ "$quick" = 1 ]; then rooms=128; per_room=200; else rooms=1024; per_room=1000; fi
    # The server's defaults (64MiB budget, SQLite store) plus --rate 0.
    # Each fill starts on a fresh file, removed afterwards (4 GiB in full).
    fill_db=target/bench/fill.db
    rm -f "$fill_db" "$fill_db-wal" "$fill_db-shm"
    run fill --rooms "$rooms" --messages "$per_room" --size 4096 --clients 8 --db "$fill_db" --timeout 3600
    rm -f "$fill_db" "$fill_db-wal" "$fill_db-shm"
    run fill --rooms "$rooms" --messages "$per_room" --size 4096 --clients 8 --db :memory: --timeout 1800
    miss_db=target/bench/missread.db
    for i in $(seq 1 "$runs"); do
        echo "bench: missread run $i of $runs" >&2
        rm -f "$miss_db" "$miss_db-wal" "$miss_db-shm"
        run missread --messages 1000 --size 4096 --resumes 20 --subscribers 1000 --rate 50 --seconds 10 --clients 4 \
            --db "$miss_db" --timeout 600
    done
    rm -f "$miss_db" "$miss_db-wal" "$miss_db-shm"
fi
if [ "$tls" = 1 ]; then
    tls_s=3
    [ "$quick" = 1 ] && tls_s=1
    for i in $(seq 1 "$runs"); do
        echo "bench: tls run $i of $runs" >&2
        run tls --clients 2 --seconds "$tls_s"
    done
fi
# One load on smolchat, then on the peer, with the same flags (smolchat's
# after "--"; the peer ignores those it does not implement); each JSON
# line tagged with the load's name for `loadgen compare`.
pair() {
    local load=$1
    shift
    local server start
    for server in "$smolchat" "$peer"; do
        start=$SECONDS
        if ! "$loadgen" "${pin[@]}" --server "$server" "$@" 2>> "$log" |
            sed "s|^{|{\"load\":\"$load\",|" >> "$out"; then
            echo "bench: loadgen --server $server $* failed; see $log" >&2
        fi
        echo "[$((SECONDS - start)) s] $(tail -n 1 "$log")" >&2
    done
}
if [ "$compare" = 1 ]; then
    if [ "$quick" = 1 ]; then
        c_post=2; c_m1000=200; c_paced=100; c_m100=500; c_slow=2500
    else
        c_post=3; c_m1000=500; c_paced=300; c_m100=2000; c_slow=3000
    fi
    for i in $(seq 1 "$runs"); do
        echo "bench: compare run $i of $runs; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
        # smolchat on one executor thread, as the peer on one tokio worker.
        pair "keep-alive posts, 8 clients, no subscribers" \
            post --clients 8 --seconds "$c_post" -- --threads 1
        pair "the same, smolchat with --transforms ''" \
            post --clients 8 --seconds "$c_post" -- --threads 1 --transforms ''
        pair "fan-out, 1,000 subscribers, 2 unpaced posters" \
            fanout --subscribers 1000 --messages "$c_m1000" --clients 2 -- --threads 1
        pair "fan-out, 1,000 subscribers, 50 msgs/s paced" \
            fanout --subscribers 1000 --messages "$c_paced" --rate 50 --clients 4 -- --threads 1
        pair "fan-out, 100 subscribers, 2 unpaced posters" \
            fanout --subscribers 100 --messages "$c_m100" --clients 2 -- --threads 1
        pair "2,000 idle streams" \
            idle --subscribers 2000 --seconds 1 -- --threads 1 --keepalive 15s
        # smolchat's own timeouts (the scenario's shorter ones are for
        # watching a 503 and a cut in seconds). 2 KiB texts: the peer's
        # stream socket keeps the kernel's send buffer (autotuned up to 4
        # MiB, smolchat's is 32 KiB), which swallows thousands of small
        # messages before its subscriber lags at all.
        pair "one stalled subscriber among 50, 4 unpaced posters, $c_slow posts of 2 KiB" \
            slow --subscribers 50 --messages "$c_slow" --size 2048 -- --threads 1 --publish-timeout 5s --slow-timeout 10s
    done
fi

regular_runs=$runs
[ "$memory" = 1 ] || [ "$tls" = 1 ] || [ "$compare" = 1 ] && regular_runs=0
for i in $(seq 1 "$regular_runs"); do
    echo "bench: run $i of $runs" >&2
    run post --clients 8 --seconds "$post_s"
    # More posters in flight: each wake-up of either process then serves
    # several requests, which matters on a machine whose cores are shared.
    [ "$quick" = 0 ] && run post --clients 32 --seconds "$post_s"
    run fanout --subscribers 100 --messages "$m100" --clients 8
    run fanout --subscribers 1000 --messages "$m1000" --clients 8
    run fanout --subscribers 1000 --messages "$paced" --rate 50 --clients 4
    run fanout --subscribers 10000 --messages "$m10000" --clients 8 --timeout 180
    run idle --subscribers 2000,10000 --seconds "$idle_s" -- --keepalive 15s
    run slow --subscribers 50 --seconds "$slow_s"
    for sync in full normal; do
        fresh_db
        run post --clients 8 --seconds "$durable_s" --db "$db" --sync "$sync"
        if [ "$quick" = 0 ]; then
            fresh_db
            run post --clients 32 --seconds "$durable_s" --db "$db" --sync "$sync"
        fi
    done
    fresh_db
done

# How long one fsync takes on the disk holding the database: the floor
# under a --sync full commit.
probe=target/bench/fsync.probe
fsync_s=$(dd if=/dev/zero of="$probe" bs=4k count=200 oflag=dsync 2>&1 |
    awk '/copied/ { for (i = 2; i <= NF; i++) if ($i == "s,") print $(i - 1) }')
rm -f "$probe"

if [ "$compare" = 1 ]; then
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), ${pin[*]:-not pinned};" \
        "smolchat against the axum + tokio peer (benches/peer), medians of $runs run(s) each, interleaved;" \
        "load average at the start: $load_start, at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    "$loadgen" compare < "$out"
    echo
    echo "Raw results: $out"
    exit 0
fi

echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), ${pin[*]:-not pinned};" \
    "$([ "$memory" = 1 ] && echo "memory set, ")$([ "$tls" = 1 ] && echo "tls set, ")runs: $runs; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo "fsync on the database's disk (4 KiB write + sync, dd oflag=dsync, 200 writes): $(awk -v t="$fsync_s" 'BEGIN { printf "%.3f ms each", t * 1000 / 200 }');" \
    "filesystem $(df -T target/bench | awk 'NR == 2 { print $2 }')."
echo
"$loadgen" report < "$out"
echo
echo "Raw results: $out"
