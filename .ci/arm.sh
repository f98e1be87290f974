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
#            mirror, see ARM.md), cross gcc/binutils/libc for both targets,
#            qemu-user-static from bookworm-backports, cargo-deb (pinned).
#   build    release binaries for x86_64 (rustup), aarch64 and armv7
#            (Debian rustc), sizes printed and the aarch64 budget checked.
#   test     the whole test suite (`cargo test --release --tests`) for
#            aarch64 and armv7 under qemu as cargo's runner; the tests start
#            the ARM server binary through SMOLCHAT_TEST_WRAPPER.
#   sqlite   a scratch crate with rusqlite's bundled SQLite (C code built by
#            the cc crate) cross-built for both targets and run under qemu;
#            its size delta estimates the binary once SQLite is in.
#   deb      .deb packages (amd64, arm64, armhf) with cargo-deb; info and
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
CARGO_DEB_VERSION=3.8.0
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
STEPS=()
SUMMARY=()
CURRENT=""
T_ALL=$(date +%s.%N)
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
step() {
    local name=$1
    shift
    CURRENT=$name
    echo
    echo "== arm: $name"
    local t0
    t0=$(now)
    "$@"
    STEPS+=("$(printf '%-44s %7s s' "$name" "$(secs "$t0" "$(now)")")")
    CURRENT=""
}
report() {
    local rc=$?
    echo
    echo "== arm: summary"
    for s in "${SUMMARY[@]}"; do echo "  $s"; done
    echo "  -- time per step"
    for s in "${STEPS[@]}"; do echo "  $s"; done
    printf '  %-44s %7s s\n' "total ARM part" "$(secs "$T_ALL" "$(now)")"
    if [ "$rc" != 0 ]; then
        echo "== arm: FAILED (exit $rc) in step: ${CURRENT:-?}" >&2
    fi
}
trap report EXIT
die() {
    echo "arm.sh: $*" >&2
    exit 1
}

# ---- setup ----------------------------------------------------------------------
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
    "${SUDO[@]}" apt-get update -qq || echo "WARNING: apt-get update reported errors (see above)" >&2

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
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-user-static

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
    SUMMARY+=("rustc (ARM builds): $(/usr/bin/rustc --version) [Debian $RUST_DEB]")
    SUMMARY+=("$q")
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
    SUMMARY+=("armv7 std: libstd-rust-web-dev:armhf $RUST_DEB unpacked to $dir, via $(cat "$dir/.complete")")
}

cargo_deb_setup() {
    if cargo deb --version 2>/dev/null | grep -q " $CARGO_DEB_VERSION\$"; then
        echo "cargo-deb $CARGO_DEB_VERSION already installed"
    else
        cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
    fi
    cargo deb --version
}

# ---- cross environment ----------------------------------------------------------
# Debian's rustc for both targets; cross gcc as linker and as the C compiler
# for build scripts (the cc crate: SQLite soon). qemu runs target programs:
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
xcargo() { (cross_env && CARGO_TARGET_DIR=$ARM_TARGET_DIR cargo "$@"); }

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
    local label=$1 strip=$2 bin=$3 want=$4 s built
    file -b "$bin" | grep -q "$want" || die "$bin is not $want: $(file -b "$bin")"
    built=$(size_of "$bin")
    s=$(stripped_size "$strip" "$bin")
    [ "$s" = "$built" ] || echo "WARNING: $bin was not fully stripped ($built -> $s bytes)" >&2
    printf -v line '%-8s %9d bytes (%s) stripped  %s' "$label" "$s" "$(mib "$s")" "$(file -b "$bin" | cut -d, -f1-2)"
    echo "$line"
    SUMMARY+=("size $line")
    eval "SIZE_$label=$s"
}

build_x86_64() {
    cargo build --release --locked
    report_size x86_64 strip target/release/smolchat "x86-64"
}
build_aarch64() {
    xcargo build --release --locked --target $A64
    report_size aarch64 aarch64-linux-gnu-strip "$ARM_TARGET_DIR/$A64/release/smolchat" "ARM aarch64"
}
build_armv7() {
    xcargo build --release --locked --target $A32
    report_size armv7 arm-linux-gnueabihf-strip "$ARM_TARGET_DIR/$A32/release/smolchat" "ARM, EABI5"
}

# ---- tests under emulation -------------------------------------------------------------
# cargo's RUNNER wraps the test binaries; the tests spawn the server binary
# themselves, so SMOLCHAT_TEST_WRAPPER (honoured by tests/support/mod.rs)
# puts the same emulator in front of it. --release: the server under test is
# exactly the binary that ships.
test_target() {
    local triple=$1 wrapper=$2 log
    log=$(mktemp)
    if ! (export SMOLCHAT_TEST_WRAPPER=$wrapper && xcargo test --release --locked --target "$triple" --tests) 2>&1 | tee "$log"; then
        rm -f "$log"
        die "tests failed for $triple under qemu"
    fi
    local passed
    passed=$(awk '/^test result: ok\./ { n += $4 } END { print n + 0 }' "$log")
    grep -q '^test result: FAILED' "$log" && die "a test binary failed for $triple"
    [ "$passed" -gt 0 ] || die "no tests ran for $triple"
    SUMMARY+=("tests $triple under ${wrapper%% *}: $passed passed")
    rm -f "$log"
}
test_aarch64() { test_target $A64 "$QEMU_A64"; }
test_armv7() { test_target $A32 "$QEMU_A32"; }

# ---- SQLite (C code through the cc crate) -----------------------------------------------------
# The durable store will bring rusqlite with the `bundled` feature. Until the
# project has it, a scratch crate proves the cross C toolchain builds and runs
# SQLite for both targets and measures what it adds to a binary.
PROBE=$ROOT/.ci/sqlite-probe
# smolchat's [profile.release] as CARGO_PROFILE_RELEASE_* assignments, so
# the probe is built exactly like the server.
release_profile_env() {
    python3 - "$ROOT/Cargo.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    profile = tomllib.load(f)["profile"]["release"]
for key, value in profile.items():
    if isinstance(value, bool):
        value = str(value).lower()
    print(f"CARGO_PROFILE_RELEASE_{key.upper().replace('-', '_')}={value}")
PY
}
sqlite_probe() {
    if grep -q '^name = "libsqlite3-sys"' Cargo.lock; then
        echo "the project itself builds SQLite now (libsqlite3-sys in Cargo.lock): its cross builds and tests above cover the C code"
        SQLITE_DELTA=0
        SUMMARY+=("sqlite: built into smolchat itself; no probe needed")
        return
    fi
    local t profile
    profile=$(release_profile_env)
    echo "smolchat's release profile for the probe:" $profile
    for t in $A64 $A32; do
        (cd "$PROBE" && export $profile && xcargo build --release --locked --target "$t" --bins)
        local out
        out=$(cd "$PROBE" && export $profile && xcargo run -q --release --locked --target "$t" --bin sqlite-probe)
        echo "$out"
        grep -q "^sqlite-probe ok" <<<"$out" || die "the SQLite probe did not run correctly for $t"
        local dir=$ARM_TARGET_DIR/$t/release
        local with without
        with=$(size_of "$dir/sqlite-probe")
        without=$(size_of "$dir/baseline")
        echo "$t: probe $with bytes, same program without SQLite $without bytes: SQLite adds $((with - without)) bytes"
        if [ "$t" = $A64 ]; then SQLITE_DELTA=$((with - without)); fi
        SUMMARY+=("sqlite probe $t: ran under qemu; SQLite adds $((with - without)) bytes ($(mib $((with - without))))")
    done
}
budget() {
    local est=$((SIZE_aarch64 + SQLITE_DELTA))
    local line
    line="aarch64 budget: $SIZE_aarch64 + SQLite $SQLITE_DELTA = $est bytes ($(mib "$est")) of $BUDGET ($(mib "$BUDGET"))"
    echo "$line"
    SUMMARY+=("$line")
    [ "$est" -le "$BUDGET" ] || die "over the aarch64 size budget"
}

# ---- Debian packages -------------------------------------------------------------------
# The highest glibc symbol version a binary needs, e.g. 2.34.
glibc_needed() {
    objdump -T "$1" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1
}
deb_one() {
    local arch=$1 triple=$2 bin=$3
    local deb
    if [ -z "$triple" ]; then
        deb=$(cargo deb --no-build --locked -o "$DEB_OUT" | tail -n1)
    else
        deb=$(cross_env && CARGO_TARGET_DIR=$ARM_TARGET_DIR cargo deb --no-build --locked --target "$triple" -o "$DEB_OUT" | tail -n1)
    fi
    [ -f "$deb" ] || die "cargo deb did not report a .deb for $arch"
    echo "--- $deb"
    dpkg-deb --info "$deb"
    dpkg-deb --contents "$deb"
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || die "$deb is not for $arch"
    local c
    c=$(dpkg-deb --contents "$deb")
    for f in ./usr/bin/smolchat ./etc/default/smolchat ./lib/systemd/system/smolchat.service; do
        grep -q " $f\$" <<<"$c" || die "$deb lacks $f"
    done
    # The packaged binary is the one that was built and tested.
    local x
    x=$(mktemp -d)
    dpkg-deb -x "$deb" "$x"
    cmp -s "$x/usr/bin/smolchat" "$bin" || die "$deb carries a different binary than $bin"
    cmp -s "$x/lib/systemd/system/smolchat.service" contrib/smolchat.service || die "$deb carries a different unit"
    rm -rf "$x"
    # Depends must cover the glibc the binary was linked against.
    local need declared
    need=$(glibc_needed "$bin")
    declared=$(dpkg-deb -f "$deb" Depends | grep -o 'libc6 (>= [0-9.]*)' | grep -o '[0-9][0-9.]*')
    dpkg --compare-versions "${declared:-0}" ge "$need" ||
        die "$deb declares libc6 >= ${declared:-none}, the binary needs GLIBC_$need"
    SUMMARY+=("deb $(basename "$deb"): $(size_of "$deb") bytes, needs glibc $need, Depends: $(dpkg-deb -f "$deb" Depends)")
}
debs() {
    mkdir -p "$DEB_OUT"
    deb_one amd64 "" target/release/smolchat
    deb_one arm64 $A64 "$ARM_TARGET_DIR/$A64/release/smolchat"
    deb_one armhf $A32 "$ARM_TARGET_DIR/$A32/release/smolchat"
}

# ---- systemd unit -------------------------------------------------------------------------
unit_check() {
    command -v systemd-analyze >/dev/null || die "systemd-analyze missing (package systemd)"
    # verify wants ExecStart= to exist: check the unit as installed by the
    # amd64 package, in a root of its own.
    local root
    root=$(mktemp -d)
    dpkg-deb -x "$DEB_OUT"/smolchat_*_amd64.deb "$root"
    systemd-analyze verify --root="$root" /lib/systemd/system/smolchat.service
    systemd-analyze security --offline=yes --root="$root" --threshold=2.5 \
        /lib/systemd/system/smolchat.service | tail -n 25
    local score
    score=$(systemd-analyze security --offline=yes --root="$root" /lib/systemd/system/smolchat.service |
        awk '/Overall exposure level/ { print $(NF-1) }')
    rm -rf "$root"
    SUMMARY+=("unit: systemd-analyze verify passed; exposure score $score (threshold 2.5)")
}

# ---- run ------------------------------------------------------------------------------
step "setup: apt (rustc-web, cross gcc, qemu)" apt_setup
step "setup: armv7 std (private sysroot)" armhf_std
step "setup: cargo-deb $CARGO_DEB_VERSION" cargo_deb_setup
step "build: x86_64 release (rustup)" build_x86_64
step "build: aarch64 release (cross)" build_aarch64
step "build: armv7 release (cross)" build_armv7
step "test: aarch64, whole suite under qemu" test_aarch64
step "test: armv7, whole suite under qemu" test_armv7
step "sqlite: rusqlite bundled, both targets, qemu" sqlite_probe
step "budget: aarch64 incl. SQLite <= 4 MiB" budget
step "deb: amd64, arm64, armhf" debs
step "unit: systemd-analyze" unit_check
