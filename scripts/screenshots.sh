#!/usr/bin/env bash
# Rewrites docs/screenshot-phone.png and docs/screenshot-desktop.png from the
# real page in headless Chromium (the browser suite's screenshot test with
# SMOLCHAT_SCREENSHOTS=1). A plain test run takes the same pictures into a
# temporary folder and leaves docs/ alone.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build
[ -d tests/browser/node_modules/playwright-core ] || npm ci --no-audit --no-fund --prefix tests/browser
SMOLCHAT_SCREENSHOTS=1 SMOLCHAT_BIN=${SMOLCHAT_BIN:-target/debug/smolchat} \
    node --test --test-name-pattern='^screenshots' --test-reporter=spec tests/browser/chat.test.mjs
ls -l docs/screenshot-*.png
