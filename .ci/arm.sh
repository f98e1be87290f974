#!/usr/bin/env bash
# ARM part of CI (issue 6). Called by .ci/run after the native tests; can
# also be run on its own. Needs root (or sudo) for apt on a clean Debian
# bookworm machine that has only rustup's stable toolchain, Node, Python and
# apt. Idempotent: a second run reuses what the first one installed.
#
# What it does, each step timed:
#   setup    Debian's rustc-web at ONE pinned version, with its std for the
#            host (amd64) and for arm64 from apt, the same version's armhf std
#            unpacked into a private sysroot (apt cannot install it on this
#            mirror, see docs/raspberry-pi.md), cross gcc/binutils/libc for both targets,
#            qemu-user-static from bookworm-backports.
#   build    release binaries for x86_64 (rustup), aarch64 and armv7
#            (Debian rustc; without the redis feature), sizes printed and
#            the aarch64 budget checked.
#   test     the whole test suite for aarch64 and armv7 under qemu: the
#            in-process tests compiled for the target (qemu as cargo's
#            runner), every other test natively against the ARM release
#            binary (SMOLCHAT_TEST_BIN), started through SMOLCHAT_TEST_WRAPPER.
#   chains   aarch64 (build, tests), armv7 (build, tests) and x86_64
#            (release build) run side by side: 2 cores, and
#            builds and test runs each leave one mostly idle.
#   sqlite   SQLite (rusqlite `bundled`: C code built by the cc crate with
#            the cross gcc) is in every binary; aarch64 within 4 MiB.
#   deb      .deb packages (amd64, arm64, armhf) with scripts/deb.sh; info and
#            contents printed, the glibc requirement checked.
#   unit     systemd-analyze verify and security on contrib/smolchat.service.
#
# Nothing is skipped silently: a missing piece fails the run with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# ---- pins and knobs ---------------------------------------------------------
# Debian's rustc-web and its std must be the same version for the host and
# every target. This version is in bookworm-security for amd64, arm64 and
# armhf. If the mirror no longer offers it (a newer security update replaced
# it), the newest version offered for both amd64 and arm64 is used instead,
# with a warning: bump the pin then.
RUST_DEB_PIN=${SMOLCHAT_RUST_DEB_VERSION:-1.96.0+dfsg1-1~deb12u2}
# Budget for the stripped aarch64 binary, SQLite included (issue 6).
BUDGET=$((4 * 1024 * 1024))
# Where the ARM builds go: separate from target/ because a different rustc
# builds them (keeps the native incremental cache intact).
ARM_TARGET_DIR=${SMOLCHAT_ARM_TARGET_DIR:-$ROOT/target/arm}
# Downloads and the unpacked armhf std, reused between runs.
CACHE=${SMOLCHAT_ARM_CACHE:-/var/cache/smolchat-ci}
DEB_OUT=$ROOT/target/debian
A64=aarch64-unknown-linux-gnu
A32=armv7-unknown-linux-gnueabihf

export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR=never
# Target-specific flags below would be overridden by a global RUSTFLAGS.
if [ -n "${RUSTFLAGS:-}${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
    echo "arm.sh: RUSTFLAGS/CARGO_ENCODED_RUSTFLAGS is set; it would replace the per-target flags. Unset it." >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "arm.sh: needs root or sudo for apt" >&2; exit 1; }
    SUDO=(sudo -E)
fi

# ---- step timing --------------------------------------------------------------
# Steps may run in parallel (see `together`), so what they report goes to
# files rather than shell variables.
LOGS=$(mktemp -d)
CURRENT=""
T_ALL=$(date +%s.%N)
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
summary() { echo "$*" >>"$LOGS/summary"; }
step() {
    local name=$1
    shift
    CURRENT=$name
    echo
    echo "== arm: $name"
    local t0
    t0=$(now)
    "$@"
    printf '%-52s %7s s\n' "$name" "$(secs "$t0" "$(now)")" >>"$LOGS/steps"
    CURRENT=""
}
# Runs chains of steps side by side: each argument is a function that runs
# its steps in order. On 2 cores this overlaps the single-threaded parts of
# builds (codegen-units = 1, the fat-LTO link) and the waits of test runs
# with other work. Each chain's output is kept in a file and printed, whole,
# when it ends; the first failure fails the run after every chain ended.
together() {
    local chain pids=() names=() failed=""
    for chain in "$@"; do
        ("$chain") >"$LOGS/$chain.log" 2>&1 &
        pids+=($!)
        names+=("$chain")
    done
    local i
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            failed+=" ${names[$i]}"
        fi
        echo
        echo "######## chain ${names[$i]}: output"
        cat "$LOGS/${names[$i]}.log"
    done
    [ -z "$failed" ] || die "failed chain(s):$failed (their output is above)"
}
report() {
    local rc=$?
    echo
    echo "== arm: summary"
    [ -f "$LOGS/summary" ] && sed 's/^/  /' "$LOGS/summary"
    echo "  -- time per step (chains run side by side, so steps overlap)"
    [ -f "$LOGS/steps" ] && sed 's/^/  /' "$LOGS/steps"
    printf '  %-52s %7s s\n' "total ARM part" "$(secs "$T_ALL" "$(now)")"
    if [ "$rc" != 0 ]; then
        echo "== arm: FAILED (exit $rc) in step: ${CURRENT:-?}" >&2
    fi
    rm -rf "$LOGS"
}
trap report EXIT
die() {
    echo "arm.sh: $*" >&2
    exit 1
}

# ---- setup ----------------------------------------------------------------------
# Another apt (unattended upgrades, a second CI run) may hold the lock: wait
# for it up to 10 minutes instead of failing at once.
APT_WAIT=(-o DPkg::Lock::Timeout=600)
BACKPORTS=/etc/apt/sources.list.d/smolchat-ci-bookworm-backports.sources

# Versions apt offers for package $1 (e.g. libstd-rust-web-dev:arm64).
offered() { apt-cache madison "$1" 2>/dev/null | awk -F'|' -v p="${1%%:*}" '$1 ~ p { gsub(/ /, "", $2); print $2 }'; }

apt_setup() {
    . /etc/os-release
    [ "${VERSION_CODENAME:-}" = bookworm ] ||
        echo "WARNING: written for Debian bookworm, this is ${PRETTY_NAME:-unknown}" >&2
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        "${SUDO[@]}" dpkg --add-architecture arm64
    fi
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
            'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
            "${SUDO[@]}" tee "$BACKPORTS" >/dev/null
    fi
    # A failed index shows up below as a missing candidate, with a message.
    "${SUDO[@]}" apt-get "${APT_WAIT[@]}" update -qq || echo "WARNING: apt-get update reported errors (see above)" >&2

    local a b
    a=$(offered libstd-rust-web-dev:amd64 | sort -u)
    b=$(offered libstd-rust-web-dev:arm64 | sort -u)
    if grep -qxF "$RUST_DEB_PIN" <<<"$a" && grep -qxF "$RUST_DEB_PIN" <<<"$b"; then
        RUST_DEB=$RUST_DEB_PIN
    else
        RUST_DEB=$(comm -12 <(echo "$a") <(echo "$b") | sort -V | tail -n1)
        [ -n "$RUST_DEB" ] || die "no libstd-rust-web-dev version is offered for both amd64 and arm64 (amd64: $a; arm64: $b)"
        echo "WARNING: pinned rustc-web $RUST_DEB_PIN is not offered for amd64+arm64 any more; using $RUST_DEB. Update RUST_DEB_PIN in .ci/arm.sh." >&2
    fi
    echo "rustc-web version for host and targets: $RUST_DEB"

    local pkgs=(
        "rustc-web=$RUST_DEB" "libstd-rust-web-dev:amd64=$RUST_DEB" "libstd-rust-web-dev:arm64=$RUST_DEB"
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
        gcc-arm-linux-gnueabihf libc6-dev-armhf-cross binutils-arm-linux-gnueabihf
        ca-certificates curl file dpkg-dev
    )
    # systemd-analyze checks the unit; most images have systemd already.
    command -v systemd-analyze >/dev/null || pkgs+=(systemd)
    # The unit reloads with /bin/kill (procps, which the package depends on).
    [ -x /bin/kill ] || pkgs+=(procps)
    "${SUDO[@]}" apt-get "${APT_WAIT[@]}" install -y -qq --no-install-recommends "${pkgs[@]}"
    "${SUDO[@]}" apt-get "${APT_WAIT[@]}" install -y -qq --no-install-recommends -t bookworm-backports qemu-user-static

    [ -x /usr/bin/rustc ] || die "/usr/bin/rustc missing after installing rustc-web"
    local upstream=${RUST_DEB%%+*}
    /usr/bin/rustc --version | grep -q "^rustc $upstream " ||
        die "/usr/bin/rustc is $(/usr/bin/rustc --version), expected $upstream"
    for t in x86_64-unknown-linux-gnu $A64; do
        ls /usr/lib/rustlib/$t/lib/libstd-*.rlib >/dev/null 2>&1 || die "no std for $t under /usr/lib/rustlib"
    done
    local q
    q=$(qemu-aarch64-static --version | head -n1)
    echo "$q"
    case "$q" in *"version 10."* | *"version 1"[1-9]"."*) ;; *) die "want qemu >= 10 from bookworm-backports, got: $q" ;; esac
    summary "rustc (ARM builds): $(/usr/bin/rustc --version) [Debian $RUST_DEB]"
    summary "$q"
}

# The armhf std of the same version. apt cannot install
# libstd-rust-web-dev:armhf here: the mirror's bookworm-security armhf index
# fails with "File has unexpected size" (and installing it would also pull
# libllvm:armhf and friends). Only its rlibs are needed (std is linked
# statically), so the .deb is fetched and unpacked into a private sysroot.
# First try: apt with a private armhf state limited to bookworm-security
# (signed index, hash-checked download; the system's apt state untouched).
# Fallback: the Debian pool, checked against the SHA256 pinned here for the
# pinned version (that hash is the one the mirror's index lists).
ARMHF_STD_PIN_SHA256=b9f9dd1d03a903680f918cb2bba00a2a3d76558545d5e6a8061072ab461bb989
ARMHF_SYSROOT=""
armhf_std() {
    local dir=$CACHE/armhf-std-$RUST_DEB
    ARMHF_SYSROOT=$dir/usr
    if [ -f "$dir/.complete" ]; then
        echo "reusing $dir"
    else
        "${SUDO[@]}" mkdir -p "$CACHE"
        "${SUDO[@]}" chown "$(id -u):$(id -g)" "$CACHE"
        local st=$CACHE/apt-armhf deb=libstd-rust-web-dev_${RUST_DEB}_armhf.deb
        mkdir -p "$st/lists/partial" "$st/archives/partial"
        : >"$st/status"
        printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian-security' 'Suites: bookworm-security' \
            'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' >"$st/security.sources"
        local opts=(-o "Dir::State::Lists=$st/lists" -o "Dir::State::status=$st/status"
            -o "Dir::Cache=$st" -o "Dir::Cache::archives=$st/archives"
            -o "Dir::Etc::SourceParts=$st/none"
            -o "Dir::Etc::SourceList=$st/security.sources"
            -o APT::Architecture=armhf -o "APT::Architectures::=armhf"
            -o APT::Sandbox::User=root -o Debug::NoLocking=1)
        rm -f "$CACHE/$deb"
        local how
        if apt-get "${opts[@]}" -qq update &&
            (cd "$CACHE" && apt-get "${opts[@]}" -qq download "libstd-rust-web-dev:armhf=$RUST_DEB"); then
            how="apt (signed index, hash checked)"
        else
            echo "WARNING: apt could not fetch libstd-rust-web-dev:armhf=$RUST_DEB (the armhf index above is broken)." >&2
            echo "WARNING: falling back to the Debian pool." >&2
            local pool=https://deb.debian.org/debian-security/pool/updates/main/r/rustc-web
            curl -fsSL --retry 3 -o "$CACHE/$deb" "$pool/${deb//+/%2B}" ||
                die "cannot download $deb from apt or the Debian pool: no armv7 std, so no armv7 build"
            local sum
            sum=$(sha256sum "$CACHE/$deb" | cut -d' ' -f1)
            if [ "$RUST_DEB" = "$RUST_DEB_PIN" ]; then
                [ "$sum" = "$ARMHF_STD_PIN_SHA256" ] || die "$deb has SHA256 $sum, pinned $ARMHF_STD_PIN_SHA256"
                how="Debian pool (apt index unusable), SHA256 matches the pin"
            else
                echo "WARNING: no pinned SHA256 for $RUST_DEB: the download ($sum) is unverified. Pin it in .ci/arm.sh." >&2
                how="Debian pool (apt index unusable), UNVERIFIED sha256 $sum"
            fi
        fi
        [ "$(dpkg-deb -f "$CACHE/$deb" Package Version Architecture | tr '\n' ' ')" = \
            "Package: libstd-rust-web-dev Version: $RUST_DEB Architecture: armhf " ] ||
            die "$deb is not libstd-rust-web-dev $RUST_DEB armhf"
        rm -rf "$dir.tmp"
        dpkg-deb -x "$CACHE/$deb" "$dir.tmp"
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
        rm -f "$CACHE/$deb"
        echo "$how" >"$dir/.complete"
    fi
    ls "$ARMHF_SYSROOT/lib/rustlib/$A32/lib/"libstd-*.rlib >/dev/null 2>&1 || die "no armv7 std in $ARMHF_SYSROOT"
}

# The armv7 std comes from outside apt's usual path (see above). If neither
# apt nor the pool can provide it, armv7 cannot be built here: say so loudly
# in the summary and on stderr, and still build, test and package aarch64
# (the issue allows "build what you can and explain"). Everything else stays
# fatal.
ARMV7=1
armhf_std_or_warn() {
    # Started as its own job so `set -e` stays in force inside it (it would
    # be off in an `if` condition).
    (armhf_std) &
    if wait $!; then
        ARMHF_SYSROOT=$CACHE/armhf-std-$RUST_DEB/usr
        summary "armv7 std: libstd-rust-web-dev:armhf $RUST_DEB in $CACHE/armhf-std-$RUST_DEB, via $(cat "$CACHE/armhf-std-$RUST_DEB/.complete")"
    else
        ARMV7=0
        summary "ARMV7 NOT BUILT: no armhf std for rustc $RUST_DEB (apt and the Debian pool both failed); aarch64 built, tested and packaged"
        echo "WARNING: armv7 cannot be built on this machine (no armhf std); continuing with aarch64" >&2
    fi
}
armv7_only() {
    if [ "$ARMV7" = 1 ]; then
        "$@"
    else
        echo "skipped: no armv7 std (see the summary)"
    fi
}

# ---- cross environment ----------------------------------------------------------
# Debian's rustc for both targets; cross gcc as linker and as the C compiler
# for build scripts (the cc crate: SQLite). qemu runs target programs:
#  - aarch64: no -L. libc6:arm64 (a dependency of the arm64 std package) puts
#    a loader in /lib; `-L /usr/aarch64-linux-gnu` would mix that libc
#    (2.36-9+deb12uN) with the cross loader (2.36-8) and hang in the first
#    pthread_create.
#  - armv7: no libc6:armhf here, so the cross libc via -L; LD_LIBRARY_PATH=/lib
#    keeps the loader on the cross libc even if libc6:armhf gets installed.
QEMU_A64="qemu-aarch64-static"
QEMU_A32="qemu-arm-static -L /usr/arm-linux-gnueabihf -E LD_LIBRARY_PATH=/lib"
cross_env() {
    export RUSTC=/usr/bin/rustc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=$QEMU_A64
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
    export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER=$QEMU_A32
    export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS="--sysroot $ARMHF_SYSROOT"
    export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
    export AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar
}
# Runs cargo with the cross environment (a subshell: the native steps keep
# rustup's rustc).
# One target directory per triple: the two ARM chains build at the same
# time, and cargo locks a target directory (its host part too) per build.
xdir() { echo "$ARM_TARGET_DIR/$1"; }
xbin() { echo "$ARM_TARGET_DIR/$1/$1/release/smolchat"; }
# xcargo TRIPLE ARGS...
xcargo() {
    local triple=$1
    shift
    (cross_env && CARGO_TARGET_DIR=$(xdir "$triple") cargo "$@" --target "$triple")
}

# ---- build ------------------------------------------------------------------------
size_of() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
# Size after an explicit strip by the target's own strip (the profile strips
# already; this proves it).
stripped_size() {
    local strip=$1 bin=$2 tmp
    tmp=$(mktemp)
    "$strip" -o "$tmp" "$bin"
    size_of "$tmp"
    rm -f "$tmp"
}
report_size() {
    local label=$1 strip=$2 bin=$3 want=$4 s built line
    file -b "$bin" | grep -q "$want" || die "$bin is not $want: $(file -b "$bin")"
    built=$(size_of "$bin")
    s=$(stripped_size "$strip" "$bin")
    # A few bytes of padding may go; symbols would be far more.
    [ $((built - s)) -lt 4096 ] || echo "WARNING: $bin was not stripped ($built -> $s bytes)" >&2
    printf -v line '%-8s %9d bytes (%s) stripped  %s' "$label" "$s" "$(mib "$s")" "$(file -b "$bin" | cut -d, -f1-2)"
    echo "$line"
    summary "size $line"
    echo "$s" >"$LOGS/size_$label"
}

build_x86_64() {
    cargo build --release --locked
    report_size x86_64 strip target/release/smolchat "x86-64"
}
# The ARM builds leave out the `redis` feature (--redis, ~1.1 MB on
# aarch64), which would take them past the budget (docs/scale-out.md).
ARM_FEATURES=(--no-default-features)
build_aarch64() {
    xcargo $A64 build --release --locked "${ARM_FEATURES[@]}"
    report_size aarch64 aarch64-linux-gnu-strip "$(xbin $A64)" "ARM aarch64"
}
build_armv7() {
    xcargo $A32 build --release --locked "${ARM_FEATURES[@]}"
    report_size armv7 arm-linux-gnueabihf-strip "$(xbin $A32)" "ARM, EABI5"
}

# ---- tests under emulation -------------------------------------------------------------
# Two kinds of tests, each run where it tests the ARM build:
#
#  - In-process tests (the library's unit tests, the transforms' tables
#    among them) are compiled for the target and run under qemu as cargo's
#    runner. In the release profile: the dependencies are the ones the
#    shipped binary was built from, and the code under test is optimised as
#    it ships (opt-level 2, fat LTO), except that the library's own crate is
#    split into 16 codegen units instead of 1: its test crate then costs
#    102 s of CPU instead of 190 (aarch64, measured), and only smolchat's
#    own crate is affected, so the dependencies are still reused. Only `--lib`: an integration test target would make cargo
#    build the binary again (dev-dependencies change its features) and link
#    another harness with LTO, ~2 minutes per target for no new check.
#  - Every other test drives the server binary from outside, over TCP,
#    Chromium or signals. Those test binaries are the native ones `cargo
#    test` built for x86_64; SMOLCHAT_TEST_BIN points them at the ARM release
#    binary and SMOLCHAT_TEST_WRAPPER (tests/support/mod.rs,
#    tests/browser/harness.mjs) starts it under qemu. The binary that ships
#    is the one tested, and compiling a dozen test harnesses for each target
#    (2-3 minutes per target) would test nothing more.
#
# Every test binary runs to the end (no fail-fast) and the failures are
# listed.
run_logged() {
    local what=$1 log=$2
    shift 2
    if ! "$@" 2>&1 | tee -a "$log"; then
        echo "== arm: failed: $what" >&2
        grep -E '^test .* \.\.\. FAILED$|^✖ ' "$log" | sort -u >&2 || true
        return 1
    fi
}
count_passed() { awk '/^test result: ok\./ { n += $4 } END { print n + 0 }' "$1"; }

unit_tests_target() {
    local triple=$1 wrapper=$2 log
    log=$(mktemp)
    run_logged "in-process tests for $triple" "$log" \
        xcargo "$triple" test --release --locked "${ARM_FEATURES[@]}" --no-fail-fast --lib \
        --config 'profile.release.package.smolchat.codegen-units=16' ||
        die "in-process tests failed for $triple under qemu"
    ! grep -q '^test result: FAILED' "$log" || die "a test binary failed for $triple"
    local passed
    passed=$(count_passed "$log")
    [ "$passed" -gt 0 ] || die "no in-process tests ran for $triple"
    summary "tests $triple in-process under ${wrapper%% *} (lib, release): $passed passed"
    rm -f "$log"
}

# The native integration test executables, built by `cargo test` before
# (this only lists them: nothing is rebuilt).
native_test_bins() {
    cargo test --locked --no-run --tests --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["kind"] == ["test"]:
        print(m["executable"])'
}

server_tests_target() {
    local triple=$1 wrapper=$2 log bins
    local bin
    bin=$(xbin "$triple")
    [ -x "$bin" ] || die "no release binary $bin to test"
    mapfile -t bins < <(native_test_bins)
    [ ${#bins[@]} -gt 5 ] || die "found only ${#bins[@]} native test binaries (cargo test must build them first)"
    log=$(mktemp)
    local t failed=""
    for t in "${bins[@]}"; do
        echo "     Running $(basename "$t") against the $triple server"
        SMOLCHAT_TEST_WRAPPER=$wrapper SMOLCHAT_TEST_BIN=$bin run_logged "$(basename "$t") for $triple" "$log" "$t" ||
            failed+=" $(basename "$t")"
    done
    [ -z "$failed" ] || die "server tests failed for $triple under qemu:$failed"
    ! grep -q '^test result: FAILED' "$log" || die "a test binary failed for $triple"
    local passed
    passed=$(count_passed "$log")
    summary "tests $triple server under ${wrapper%% *} (${#bins[@]} native test binaries, the release binary): $passed passed"
    rm -f "$log"
}
# ---- SQLite (C code through the cc crate) -----------------------------------------------------
# rusqlite's `bundled` feature compiles SQLite's C amalgamation with the cc
# crate, i.e. with CC_<target>/AR_<target> from cross_env. The durability
# tests above ran that SQLite under qemu; here: it is really in each binary,
# and the aarch64 binary, SQLite included, stays within the budget.
sqlite_and_budget() {
    grep -q '^name = "libsqlite3-sys"' Cargo.lock || die "no libsqlite3-sys in Cargo.lock: where did SQLite go?"
    local bin
    local bins=(target/release/smolchat "$(xbin $A64)")
    [ "$ARMV7" = 1 ] && bins+=("$(xbin $A32)")
    for bin in "${bins[@]}"; do
        grep -aq 'SQLite format 3' "$bin" || die "$bin does not contain SQLite"
    done
    local v
    v=$(grep -A1 '^name = "libsqlite3-sys"' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
    summary "sqlite: libsqlite3-sys $v (bundled C, cross gcc) in all ${#bins[@]} binaries"
    local line SIZE_aarch64
    SIZE_aarch64=$(cat "$LOGS/size_aarch64")
    line="aarch64 budget: $SIZE_aarch64 bytes ($(mib "$SIZE_aarch64")) of $BUDGET ($(mib "$BUDGET")), SQLite included"
    echo "$line"
    summary "$line"
    [ "$SIZE_aarch64" -le "$BUDGET" ] || die "over the aarch64 size budget"
}

# ---- Debian packages -------------------------------------------------------------------
# The highest glibc symbol version a binary needs, e.g. 2.34.
glibc_needed() {
    objdump -T "$1" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1
}
deb_one() {
    local arch=$1 triple=$2 bin=$3
    local deb
    deb=$(scripts/deb.sh ${triple:+--target "$triple"} --bin "$bin" -o "$DEB_OUT" | tail -n1)
    [ -f "$deb" ] || die "scripts/deb.sh did not report a .deb for $arch"
    echo "--- $deb"
    dpkg-deb --info "$deb"
    dpkg-deb --contents "$deb"
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || die "$deb is not for $arch"
    local c
    c=$(dpkg-deb --contents "$deb")
    for f in ./usr/bin/smolchat ./etc/default/smolchat ./usr/lib/systemd/system/smolchat.service; do
        grep -q " $f\$" <<<"$c" || die "$deb lacks $f"
    done
    dpkg-deb -I "$deb" conffiles | grep -qx /etc/default/smolchat ||
        die "$deb does not keep /etc/default/smolchat as a conffile"
    dpkg-deb -I "$deb" postinst | grep -q 'deb-systemd-helper enable smolchat.service' ||
        die "$deb does not enable the unit on install"
    # The packaged binary is the one that was built and tested.
    local x
    x=$(mktemp -d)
    dpkg-deb -x "$deb" "$x"
    cmp -s "$x/usr/bin/smolchat" "$bin" || die "$deb carries a different binary than $bin"
    cmp -s "$x/usr/lib/systemd/system/smolchat.service" contrib/smolchat.service || die "$deb carries a different unit"
    rm -rf "$x"
    # Depends must cover the glibc the binary was linked against.
    local need declared
    need=$(glibc_needed "$bin")
    declared=$(dpkg-deb -f "$deb" Depends | sed -n 's/.*libc6 (>= \([0-9.]*\)).*/\1/p')
    dpkg --compare-versions "${declared:-0}" ge "$need" ||
        die "$deb declares libc6 >= ${declared:-none}, the binary needs GLIBC_$need"
    summary "deb $(basename "$deb"): $(size_of "$deb") bytes, needs glibc $need, Depends: $(dpkg-deb -f "$deb" Depends)"
}
debs() {
    mkdir -p "$DEB_OUT"
    deb_one amd64 "" target/release/smolchat
    deb_one arm64 $A64 "$(xbin $A64)"
    armv7_only deb_one armhf $A32 "$(xbin $A32)"
}

# The amd64 package really installs: maintainer scripts run, the unit gets
# enabled, the binary runs from /usr/bin; then purge leaves nothing behind.
# policy-rc.d keeps a CI machine that runs systemd from starting it.
deb_install_check() {
    if dpkg-query -W -f '${Status}' smolchat 2>/dev/null | grep -q 'ok installed'; then
        die "a smolchat package is installed on this machine; not touching it"
    fi
    (
        policy=/usr/sbin/policy-rc.d
        if [ ! -e $policy ]; then
            printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee $policy >/dev/null
            "${SUDO[@]}" chmod 755 $policy
            trap '"${SUDO[@]}" rm -f $policy' EXIT
        fi
        "${SUDO[@]}" dpkg -i "$DEB_OUT"/smolchat_*_amd64.deb
        [ -L /etc/systemd/system/multi-user.target.wants/smolchat.service ] || die "the unit was not enabled"
        /usr/bin/smolchat --version
        # Every installed file matches the package's md5sums (dpkg --verify
        # prints a line per file that differs, and exits 0 either way).
        local differ
        differ=$(dpkg --verify smolchat) || die "dpkg --verify failed"
        [ -z "$differ" ] || die "installed files differ from the package's md5sums: $differ"
        "${SUDO[@]}" dpkg --purge smolchat
    )
    [ ! -e /etc/default/smolchat ] && [ ! -e /etc/systemd/system/multi-user.target.wants/smolchat.service ] ||
        die "purge left files behind"
    summary "deb: amd64 package installed (unit enabled, binary runs) and purged cleanly"
}

# ---- systemd unit -------------------------------------------------------------------------
unit_check() {
    command -v systemd-analyze >/dev/null || die "systemd-analyze missing (package systemd)"
    # Offline, no systemd running needed: the unit as the amd64 package
    # installs it (verify wants ExecStart= to exist), in a root that also
    # holds the system's units (for the targets it names).
    local root unit=/usr/lib/systemd/system/smolchat.service
    root=$(mktemp -d)
    mkdir -p "$root/usr/lib/systemd"
    cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
    dpkg-deb -x "$DEB_OUT"/smolchat_*_amd64.deb "$root"
    # verify checks every Exec*= command inside the root: the package depends
    # on procps for ExecReload=/bin/kill, so the root gets the host's copy.
    [ -x /bin/kill ] || die "/bin/kill missing (package procps)"
    mkdir -p "$root/bin"
    cp /bin/kill "$root/bin/kill"
    systemd-analyze verify --root="$root" "$unit"
    echo "systemd-analyze verify: ok"
    local report
    report=$(systemd-analyze security --offline=yes --root="$root" "$unit")
    echo "$report" | grep -E '✗|Overall'
    systemd-analyze security --offline=yes --root="$root" --threshold=20 "$unit" >/dev/null ||
        die "the unit's exposure level went over 2.0 (see the ✗ lines above)"
    rm -rf "$root"
    summary "unit: systemd-analyze verify ok; $(echo "$report" | grep -o 'Overall exposure level.*')"
}

# ---- run ------------------------------------------------------------------------------
# Each chain runs its steps in order; the three chains run side by side.
chain_aarch64() {
    step "build: aarch64 release (cross)" build_aarch64
    step "test: aarch64 in-process under qemu" unit_tests_target $A64 "$QEMU_A64"
    step "test: aarch64 server under qemu, every test" server_tests_target $A64 "$QEMU_A64"
}
chain_armv7() {
    armv7_only step "build: armv7 release (cross)" build_armv7
    armv7_only step "test: armv7 in-process under qemu" unit_tests_target $A32 "$QEMU_A32"
    armv7_only step "test: armv7 server under qemu, every test" server_tests_target $A32 "$QEMU_A32"
}
chain_x86_64() {
    step "build: x86_64 release (rustup)" build_x86_64
}

step "setup: apt (rustc-web, cross gcc, qemu)" apt_setup
step "setup: armv7 std (private sysroot)" armhf_std_or_warn
# The native test binaries the server tests run; built already when .ci/run
# ran the test suite, so this only checks they are there.
step "build: native test binaries" cargo test --locked --no-run --tests
step "chains: aarch64 | armv7 | x86_64" together chain_aarch64 chain_armv7 chain_x86_64
step "sqlite + budget (aarch64 <= 4 MiB)" sqlite_and_budget
step "deb: amd64, arm64, armhf" debs
step "deb: install + purge (amd64)" deb_install_check
step "unit: systemd-analyze" unit_check
