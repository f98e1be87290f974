#!/usr/bin/env bash
# Runs the abuse suite (tests/abuse.rs) at full size against the release
# binary and prints each case's figures: healthz p99 and worst, honest
# posts accepted, peak RSS growth, panics. docs/security.md records a run.
#
#   scripts/abuse.sh            # every case
#   scripts/abuse.sh slowloris  # the cases whose name contains "slowloris"
#
# The CI-sized run is part of the test suite (cargo test --test abuse).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin smolchat
echo "abuse: full size, release binary; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
SMOLCHAT_ABUSE=full SMOLCHAT_TEST_BIN=target/release/smolchat \
    cargo test --release --quiet --test abuse -- --test-threads 1 --nocapture "$@" 2>&1 |
    grep -E '^abuse |^test result|panicked|FAILED|assert'
