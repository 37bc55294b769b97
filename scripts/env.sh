# shellcheck shell=bash
# Shared set-up for scripts/test, scripts/bench, scripts/bench-http and
# scripts/demo: installs the build dependencies on a fresh Debian machine
# and points cgo at the libtls under test. Source it, then call
# libtls_setup.

# apt_install installs the named Debian packages that are not installed yet.
apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages: ${missing[*]} (run as root to install them)" >&2
		return 1
	fi
	echo "== apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

libtls_setup() {
	if command -v dpkg-query >/dev/null 2>&1; then
		# curl and tinyproxy are real peers of libtlshttp's tests, python3
		# (Python's ssl) of test/peers'.
		local pkgs=(pkg-config gcc libc6-dev openssl curl python3 tinyproxy)
		# With LIBTLS_PREFIX the system libtls is not needed.
		[ -z "${LIBTLS_PREFIX:-}" ] && pkgs+=(libtls-dev)
		apt_install "${pkgs[@]}"
	fi
	if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
		export PATH="/usr/local/go/bin:$PATH"
	fi
	export CGO_ENABLED=1
	if [ -n "${LIBTLS_PREFIX:-}" ]; then
		# Absolute, so that the rpath holds from any directory.
		LIBTLS_PREFIX=$(cd "$LIBTLS_PREFIX" && pwd) || return 1
		export LIBTLS_PREFIX
		local pc="$LIBTLS_PREFIX/lib/pkgconfig"
		if [ ! -f "$pc/libtls.pc" ]; then
			echo "LIBTLS_PREFIX=$LIBTLS_PREFIX has no lib/pkgconfig/libtls.pc" >&2
			return 1
		fi
		export PKG_CONFIG_PATH="$pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
		# An rpath so test binaries load this install, not the system's.
		export CGO_LDFLAGS="-Wl,-rpath,$LIBTLS_PREFIX/lib ${CGO_LDFLAGS:-}"
		export PATH="$LIBTLS_PREFIX/bin:$PATH"
	fi
}

# bench_certs DIR makes the benchmarks' certificates in DIR with openssl: an
# ECDSA P-256 CA (ca.pem) and a leaf for localhost and 127.0.0.1 (cert.pem,
# key.pem). -sha256: LibreSSL's openssl signs with ECDSA-SHA1 by default,
# which crypto/tls rejects.
bench_certs() {
	local dir=$1
	mkdir -p "$dir"
	mkcnf() { # CN, extensions
		printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = %s\n[ext]\n%s\n' "$1" "$2"
	}
	mkcnf "golibtls bench CA" $'basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier = hash' >"$dir/ca.cnf"
	mkcnf "localhost" $'basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\nauthorityKeyIdentifier = keyid' >"$dir/leaf.cnf"
	(
		cd "$dir" || exit 1
		openssl ecparam -name prime256v1 -genkey -noout -out ca.key
		openssl req -new -x509 -sha256 -config ca.cnf -key ca.key -days 30 -extensions ext -out ca.pem
		openssl ecparam -name prime256v1 -genkey -noout -out key.pem
		openssl req -new -config leaf.cnf -key key.pem -out leaf.csr
		openssl x509 -req -sha256 -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
			-extfile leaf.cnf -extensions ext -out cert.pem 2>/dev/null
		chmod 600 ./*.pem ./*.key
		openssl verify -CAfile ca.pem cert.pem >/dev/null
	)
}
