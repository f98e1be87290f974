#!/usr/bin/env bash
# Builds smolchat's .deb from a release binary that is already built, with
# dpkg-deb only (in every Debian and Raspberry Pi OS): no tool to install
# first. docs/raspberry-pi.md#3-install-the-deb says how to use it.
#
#   scripts/deb.sh [--target TRIPLE] [--bin PATH] [-o DIR]
#
#   --target  the Rust target the binary was built for (default: this
#             machine's); it names the package's architecture:
#             x86_64-unknown-linux-gnu -> amd64,
#             aarch64-unknown-linux-gnu -> arm64,
#             armv7-unknown-linux-gnueabihf -> armhf
#   --bin     the binary to package (default: target/release/smolchat, or
#             target/TRIPLE/release/smolchat with --target; $CARGO_TARGET_DIR
#             is honoured)
#   -o        where the .deb goes (default: target/debian)
#
# Prints the path of the .deb as its last line.
#
# What the package holds: /usr/bin/smolchat (the binary as built, byte for
# byte), the hardened unit /usr/lib/systemd/system/smolchat.service
# (enabled and started on install, restarted on upgrade, stopped on
# removal: the maintainer scripts are debhelper's dh_installsystemd
# snippets), /etc/default/smolchat (a conffile: kept on removal, removed
# on purge) and the documentation under /usr/share/doc/smolchat.
set -euo pipefail
here=$PWD
root=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    sed -n '6,16p' "$root/scripts/deb.sh" | sed 's/^# \{0,1\}//' >&2
    exit "$1"
}
# Paths given are from where the script is called.
abs() { case "$1" in /*) echo "$1" ;; *) echo "$here/$1" ;; esac; }
triple="" bin="" out=$root/target/debian
while [ $# -gt 0 ]; do
    case "$1" in
    --target) triple=${2:?}; shift 2 ;;
    --bin) bin=$(abs "${2:?}"); shift 2 ;;
    -o) out=$(abs "${2:?}"); shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "deb.sh: unknown argument: $1" >&2; usage 2 ;;
    esac
done
cd "$root"

die() {
    echo "deb.sh: $*" >&2
    exit 1
}
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (package dpkg)"

host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
case "${triple:-$host}" in
x86_64-*linux-gnu) arch=amd64 ;;
aarch64-*linux-gnu) arch=arm64 ;;
armv7-*linux-gnueabihf | arm-*linux-gnueabihf) arch=armhf ;;
*) die "no Debian architecture known for target '${triple:-$host}'" ;;
esac
tdir=${CARGO_TARGET_DIR:-target}
if [ -z "$bin" ]; then
    if [ -n "$triple" ]; then bin=$tdir/$triple/release/smolchat; else bin=$tdir/release/smolchat; fi
fi
[ -x "$bin" ] || die "no binary at $bin: build it first (cargo build --release${triple:+ --target $triple})"
# The ELF header's machine field (bytes 18-19, little-endian) must match.
machine=$(od -An -tx1 -j18 -N2 "$bin" | tr -d ' \n')
case "$arch:$machine" in
amd64:3e00 | arm64:b700 | armhf:2800) ;;
*) die "$bin is not a binary for $arch (ELF machine $machine)" ;;
esac

# Name, version and description from Cargo.toml's [package] table.
field() { sed -n "/^\[package\]/,/^\[/ s/^$1 = \"\(.*\)\"$/\1/p" Cargo.toml | head -n1; }
name=$(field name)
version=$(field version)-1
summary=$(field description)
homepage=$(field repository)
[ "$name" = smolchat ] && [ -n "${version%-1}" ] || die "cannot read name and version from Cargo.toml"

# Built against Debian bookworm's glibc 2.36; the binary needs GLIBC_2.34
# symbols at most (.ci/arm.sh checks), so Raspberry Pi OS bookworm and
# newer. libgcc-s1 is for unwinding (panic = "unwind"); procps has
# /bin/kill, which the unit's ExecReload runs.
depends="libc6 (>= 2.34), libgcc-s1, procps"
maintainer="smolchat maintainers <maintainers@users.noreply.r-seed-dc8fc3c7.example>"
unit=smolchat.service

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"
doc=$root/usr/share/doc/$name
install -D -m 755 "$bin" "$root/usr/bin/$name"
install -D -m 644 contrib/smolchat.service "$root/usr/lib/systemd/system/$unit"
install -D -m 644 contrib/smolchat.default "$root/etc/default/$name"
install -D -m 644 README.md "$doc/README.md"
install -d "$doc/docs"
install -m 644 docs/*.md "$doc/docs/"
cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $name
Copyright: smolchat contributors
License: $(field license)
EOF
chmod 644 "$doc/copyright"

mkdir -m 755 "$root/DEBIAN"
# Maintainer scripts: what debhelper's dh_installsystemd writes for a unit
# that is enabled and started, and restarted after an upgrade.
script() {
    local f=$root/DEBIAN/$1
    {
        echo '#!/bin/sh'
        echo 'set -e'
        cat
    } >"$f"
    chmod 755 "$f"
}
script postinst <<EOF
if [ "\$1" = "configure" ] || [ "\$1" = "abort-upgrade" ] || [ "\$1" = "abort-deconfigure" ] || [ "\$1" = "abort-remove" ] ; then
	# This will only remove masks created by d-s-h on package removal.
	deb-systemd-helper unmask $unit >/dev/null || true

	# was-enabled defaults to true, so new installations run enable.
	if deb-systemd-helper --quiet was-enabled $unit; then
		# Enables the unit on first installation, creates new
		# symlinks on upgrades if the unit file has changed.
		deb-systemd-helper enable $unit >/dev/null || true
	else
		# Update the statefile to add new symlinks (if any), which need to be
		# cleaned up on purge. Also remove old symlinks.
		deb-systemd-helper update-state $unit >/dev/null || true
	fi
fi
if [ "\$1" = "configure" ] || [ "\$1" = "abort-upgrade" ] || [ "\$1" = "abort-deconfigure" ] || [ "\$1" = "abort-remove" ] ; then
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		if [ -n "\$2" ]; then
			_dh_action=restart
		else
			_dh_action=start
		fi
		deb-systemd-invoke \$_dh_action $unit >/dev/null || true
	fi
fi
EOF
script prerm <<EOF
if [ -d /run/systemd/system ] && [ "\$1" = remove ]; then
	deb-systemd-invoke stop $unit >/dev/null || true
fi
EOF
script postrm <<EOF
if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ "\$1" = "remove" ]; then
	if [ -x "/usr/bin/deb-systemd-helper" ]; then
		deb-systemd-helper mask $unit >/dev/null || true
	fi
fi

if [ "\$1" = "purge" ]; then
	if [ -x "/usr/bin/deb-systemd-helper" ]; then
		deb-systemd-helper purge $unit >/dev/null || true
		deb-systemd-helper unmask $unit >/dev/null || true
	fi
fi
EOF
echo "/etc/default/$name" >"$root/DEBIAN/conffiles"
# md5sums lists every file but the conffiles (dpkg keeps their sums itself).
(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"
installed=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
{
    echo "Package: $name"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: $maintainer"
    echo "Installed-Size: $installed"
    echo "Depends: $depends"
    echo "Section: net"
    echo "Priority: optional"
    [ -z "$homepage" ] || echo "Homepage: $homepage"
    echo "Description: $summary"
    # The long description: lines start with a space.
    echo " One small binary that turns a Raspberry Pi (or any Linux box) into a chat"
    echo " server: a browser page and curl post messages, every client of a room"
    echo " receives them live over Server-Sent Events. Runs as a hardened systemd"
    echo " service on port 8080; settings in /etc/default/smolchat."
} >"$root/DEBIAN/control"

mkdir -p "$out"
deb=$out/${name}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
