#!/usr/bin/env bash
# Builds and installs LibreSSL (libcrypto, libssl, libtls; shared and static)
# from an official release tarball, for testing golibtls against real
# LibreSSL (LIBTLS_PREFIX=PREFIX scripts/test). The Dockerfile runs it.
#
#   scripts/build-libressl.sh [VERSION [SHA256 [PREFIX]]]
#   scripts/build-libressl.sh --tarball FILE [VERSION [SHA256 [PREFIX]]]
#   scripts/build-libressl.sh --check-only PREFIX [VERSION]
#
# Defaults: VERSION 4.3.2, its published SHA-256, PREFIX /opt/libressl.
#
# The tarball libressl-VERSION.tar.gz is downloaded (curl or wget) from
# LibreSSL's official distribution directory, or taken from a local file with
# --tarball FILE or LIBRESSL_TARBALL=FILE (a mirror, an air-gapped build). In
# both cases its SHA-256 is checked before anything is unpacked, and the
# script stops on a mismatch. It builds nothing else: no git checkouts, no
# other archives.
#
# After `make install` (and on its own with --check-only) it checks the
# install: PREFIX/lib/pkgconfig/libtls.pc, libtls.so and libtls.a exist, and a
# small C program that includes <tls.h>, calls tls_init() and prints
# LIBRESSL_VERSION_NUMBER compiles, links with an rpath and runs against
# PREFIX/lib. Set CC to use another compiler than cc.
set -euo pipefail

readonly DEFAULT_VERSION=4.3.2
readonly DEFAULT_SHA256=edf01aee24c65d69e6a9efcb9d44bcda682ff9d4f3bbbd95e794e1dfa90847b5
readonly DEFAULT_PREFIX=/opt/libressl
readonly DIST_URL=https://ftp.openbsd.org/pub/OpenBSD/LibreSSL

# WORK is the script's temporary directory, removed on exit whatever happens.
WORK=""
cleanup() {
	if [ -n "$WORK" ]; then
		rm -rf -- "$WORK"
	fi
}
trap cleanup EXIT

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

die() {
	echo "build-libressl: error: $*" >&2
	exit 1
}

log() {
	echo "== $*"
}

# valid_version VERSION: a plain release number such as 4.3.2.
valid_version() {
	[[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]
}

# version_number VERSION prints LIBRESSL_VERSION_NUMBER of a release
# (MNNFFPPS: 4.3.2 -> 0x4030200f).
version_number() {
	local major minor fix
	IFS=. read -r major minor fix <<<"$1"
	printf '0x%x%02x%02x00f\n' "$major" "$minor" "$fix"
}

# check_install PREFIX [VERSION] checks an install made by this script (or any
# LibreSSL install): the pkg-config file and libraries exist, and a program
# using libtls builds, links against PREFIX/lib and runs.
check_install() {
	local prefix=$1 version=${2:-}
	local cc=${CC:-cc}
	local src bin out want ldd_out
	local -a flags

	[[ $prefix == /* ]] || die "PREFIX must be an absolute path: $prefix"
	log "checking the install in $prefix"
	local f
	for f in lib/pkgconfig/libtls.pc include/tls.h include/openssl/opensslv.h lib/libtls.so lib/libtls.a; do
		[ -e "$prefix/$f" ] || die "$prefix/$f is missing"
	done

	if command -v pkg-config >/dev/null 2>&1; then
		# The .pc file is what golibtls's cgo uses, so read the flags from it.
		local pcv
		pcv=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" PKG_CONFIG_LIBDIR="$prefix/lib/pkgconfig" pkg-config --modversion libtls) ||
			die "pkg-config cannot read $prefix/lib/pkgconfig/libtls.pc"
		if [ -n "$version" ] && [ "$pcv" != "$version" ]; then
			die "libtls.pc says version $pcv, expected $version"
		fi
		read -r -a flags <<<"$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" PKG_CONFIG_LIBDIR="$prefix/lib/pkgconfig" pkg-config --cflags --libs libtls)"
	else
		flags=("-I$prefix/include" "-L$prefix/lib" -ltls -lssl -lcrypto)
	fi

	mkdir -p "$WORK/check"
	src=$WORK/check/tlscheck.c
	bin=$WORK/check/tlscheck
	cat >"$src" <<'EOF'
#include <stdio.h>
#include <tls.h>
#include <openssl/opensslv.h>

int main(void) {
#ifndef LIBRESSL_VERSION_NUMBER
	fprintf(stderr, "LIBRESSL_VERSION_NUMBER is not defined: not LibreSSL headers\n");
	return 1;
#else
	if (tls_init() != 0) {
		fprintf(stderr, "tls_init failed\n");
		return 1;
	}
	printf("0x%lx\n", (unsigned long)LIBRESSL_VERSION_NUMBER);
	return 0;
#endif
}
EOF
	"$cc" -o "$bin" "$src" "${flags[@]}" "-Wl,-rpath,$prefix/lib" ||
		die "a program using <tls.h> does not compile and link against $prefix"
	out=$("$bin") || die "the libtls check program failed to run"
	if command -v ldd >/dev/null 2>&1; then
		ldd_out=$(ldd "$bin")
		local lib
		for lib in libtls libssl libcrypto; do
			grep -q "$lib\.so.* => $prefix/lib/" <<<"$ldd_out" ||
				die "the check program does not load $lib from $prefix/lib:"$'\n'"$ldd_out"
		done
	fi
	if [ -n "$version" ]; then
		want=$(version_number "$version")
		[ "$out" = "$want" ] || die "LIBRESSL_VERSION_NUMBER is $out, expected $want for $version"
	fi
	log "ok: $prefix has libtls (LIBRESSL_VERSION_NUMBER $out)"
}

# fetch_tarball NAME DEST copies LIBRESSL_TARBALL or downloads NAME to DEST.
fetch_tarball() {
	local name=$1 dest=$2
	if [ -n "${LIBRESSL_TARBALL:-}" ]; then
		[ -f "$LIBRESSL_TARBALL" ] || die "LIBRESSL_TARBALL=$LIBRESSL_TARBALL is not a file"
		log "using the local tarball $LIBRESSL_TARBALL"
		# Copy first, so that the file checked is the file unpacked.
		cp -- "$LIBRESSL_TARBALL" "$dest"
		return
	fi
	local url=$DIST_URL/$name
	log "downloading $url"
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --proto '=https' --tlsv1.2 --retry 3 -o "$dest" "$url" || die "download failed: $url"
	elif command -v wget >/dev/null 2>&1; then
		wget -q --https-only -O "$dest" "$url" || die "download failed: $url"
	else
		die "neither curl nor wget is installed (or pass --tarball FILE)"
	fi
}

# verify_sha256 FILE SHA256 stops the script unless FILE has that SHA-256.
verify_sha256() {
	local file=$1 want=$2 got
	command -v sha256sum >/dev/null 2>&1 || die "sha256sum is not installed"
	got=$(sha256sum -- "$file") || die "sha256sum failed on $file"
	got=${got%% *}
	if [ "$got" != "$want" ]; then
		cat >&2 <<EOF
build-libressl: error: SHA-256 MISMATCH for $(basename -- "$file")
  expected: $want
  actual:   $got
The tarball was not unpacked. Do not use it: fetch it again from the official
LibreSSL distribution directory and compare with its SHA256 file.
EOF
		exit 1
	fi
	log "sha256 ok: $got"
}

main() {
	local tarball_opt=""
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/build-libressl.XXXXXX")
	while [ $# -gt 0 ]; do
		case $1 in
		-h | --help)
			usage
			return 0
			;;
		--check-only)
			if [ $# -lt 2 ] || [ $# -gt 3 ]; then
				die "usage: $0 --check-only PREFIX [VERSION]"
			fi
			if [ $# -eq 3 ]; then
				valid_version "$3" || die "not a release version: $3"
			fi
			check_install "$2" "${3:-}"
			return 0
			;;
		--tarball)
			[ $# -ge 2 ] || die "--tarball needs a file"
			tarball_opt=$2
			shift 2
			;;
		--tarball=*)
			tarball_opt=${1#--tarball=}
			shift
			;;
		--)
			shift
			break
			;;
		-*)
			die "unknown option $1 (see --help)"
			;;
		*)
			break
			;;
		esac
	done
	[ $# -le 3 ] || die "too many arguments (see --help)"
	if [ -n "$tarball_opt" ]; then
		LIBRESSL_TARBALL=$tarball_opt
	fi

	local version=${1:-$DEFAULT_VERSION}
	local sha256=${2:-}
	local prefix=${3:-$DEFAULT_PREFIX}
	valid_version "$version" || die "not a release version: $version"
	if [ -z "$sha256" ]; then
		[ "$version" = "$DEFAULT_VERSION" ] ||
			die "give the SHA-256 of libressl-$version.tar.gz (only $DEFAULT_VERSION has a built-in checksum)"
		sha256=$DEFAULT_SHA256
	fi
	sha256=${sha256,,}
	[[ $sha256 =~ ^[0-9a-f]{64}$ ]] || die "not a SHA-256 (64 hex digits): $sha256"
	[[ $prefix == /* ]] || die "PREFIX must be an absolute path: $prefix"

	local name=libressl-$version.tar.gz
	local tmp=$WORK
	fetch_tarball "$name" "$tmp/$name"
	verify_sha256 "$tmp/$name" "$sha256"

	log "unpacking $name"
	mkdir "$tmp/src"
	tar -xzf "$tmp/$name" -C "$tmp/src" --no-same-owner
	local dir=$tmp/src/libressl-$version
	[ -x "$dir/configure" ] || die "$name has no libressl-$version/configure"

	log "building LibreSSL $version into $prefix"
	(
		cd "$dir"
		./configure --prefix="$prefix" --enable-shared --enable-static --disable-tests
		make -j"$(nproc)"
		make install
	)
	check_install "$prefix" "$version"
}

main "$@"
