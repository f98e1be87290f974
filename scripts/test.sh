#!/usr/bin/env bash
# Runs every test of smolchat, after installing what the tests need when it
# is missing: Debian's chromium (the page's end-to-end tests run in it,
# headless), ApacheBench and nginx (HTTP/1.0 clients, tests/http10.rs) and
# the browser suite's npm packages (playwright-core and axe-core, pinned by
# tests/browser/package-lock.json). apt runs through sudo when not root.
# Arguments go to `cargo test` (e.g. `scripts/test.sh --test presence`);
# without any, the vendored poller's own tests run first (vendor/polling).
# .ci/run calls this same script.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "scripts/test.sh: need root or sudo to install $*" >&2
        exit 1
    fi
}

# Debian packages the tests use, as "command-or-path package".
wanted=(
    "/usr/bin/chromium chromium"
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf fonts-noto-color-emoji"
    "node nodejs"
    "npm npm"
    "curl curl"
    "ab apache2-utils"
    "/usr/sbin/nginx nginx"
    "redis-server redis-server"
)
missing=()
for w in "${wanted[@]}"; do
    what=${w% *}
    pkg=${w#* }
    if [[ $what == /* ]]; then
        [ -e "$what" ] || missing+=("$pkg")
    else
        command -v "$what" >/dev/null || missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing with apt: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm ci when node_modules is missing or older than the lock file.
suite=tests/browser
if [ ! -e "$suite/node_modules/.package-lock.json" ] ||
    [ "$suite/package-lock.json" -nt "$suite/node_modules/.package-lock.json" ]; then
    echo "== npm ci in $suite"
    npm ci --no-audit --no-fund --prefix "$suite"
fi

# smol's poller, vendored and patched (vendor/polling/SMOLCHAT.md): its own
# tests too, when the whole suite runs.
if [ $# -eq 0 ]; then
    echo "== cargo test for vendor/polling (its own suite)"
    cargo test --locked --quiet --manifest-path vendor/polling/Cargo.toml --target-dir target/vendor-polling
fi

echo "== cargo test $*"
exec cargo test "$@"
