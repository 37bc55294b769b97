# syntax=docker/dockerfile:1
#
# golibtls's whole test suite against real LibreSSL:
#
#   docker build -t golibtls . && docker run --rm golibtls
#
# The first stage builds LibreSSL from its official release tarball (pinned
# version and SHA-256, checked before unpacking) into /opt/libressl; the
# second runs scripts/test with LIBTLS_PREFIX=/opt/libressl as a non-root
# user. Extra arguments go to `go test`:
#
#   docker run --rm golibtls bash scripts/test -run Resume
#
# The tests need about 2,100 open descriptors at once (both ends of 1,000
# loopback connections in TestThousandBlockedReadsFewThreads), so the
# container's hard RLIMIT_NOFILE must be above that; where the default is
# 1,024 (buildah, some runtimes), pass one:
#
#   docker run --rm --ulimit nofile=4096:4096 golibtls   (podman: the same)
#
# With too low a limit that test fails and says so.
#
# Another LibreSSL release: --build-arg LIBRESSL_VERSION=X.Y.Z
# --build-arg LIBRESSL_SHA256=<its published SHA-256>.

# Both stages use the same image, so the LibreSSL build matches the glibc and
# compiler the tests link with.
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS libressl

RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		ca-certificates curl gcc libc6-dev make \
	&& rm -rf /var/lib/apt/lists/*

# Only the build script: the LibreSSL layer is rebuilt when it or the pinned
# release changes, not when the Go sources do.
COPY scripts/build-libressl.sh /usr/local/bin/build-libressl.sh

ARG LIBRESSL_VERSION=4.3.2
ARG LIBRESSL_SHA256=edf01aee24c65d69e6a9efcb9d44bcda682ff9d4f3bbbd95e794e1dfa90847b5
RUN build-libressl.sh "${LIBRESSL_VERSION}" "${LIBRESSL_SHA256}" /opt/libressl


FROM golang:${GO_VERSION}-bookworm AS test

# What scripts/env.sh wants with LIBTLS_PREFIX set (no libtls-dev: the
# system libtls is not used), installed here so the tests never need root.
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		curl gcc libc6-dev openssl pkg-config python3 tinyproxy \
	&& rm -rf /var/lib/apt/lists/*

COPY --from=libressl /opt/libressl /opt/libressl

RUN useradd --create-home --uid 10001 --user-group tester \
	&& install -d -o tester -g tester /src

USER tester
WORKDIR /src

# The Go caches belong to the test user (GOPATH /go is world-writable in the
# Go image; the build cache lives in the user's home).
ENV LIBTLS_PREFIX=/opt/libressl \
	GOMODCACHE=/go/pkg/mod \
	GOCACHE=/home/tester/.cache/go-build

# Modules first, so that they are downloaded again only when a go.mod or
# go.sum changes. The repository holds five modules: the core (no etcd,
# grpc-go or client_golang), etcdkeys and cmd/tlsresume (which use etcd),
# libtlsgrpc (grpc-go) and libtlsprom (client_golang); they replace the
# core with the copy in this tree, so its go.mod comes first.
COPY --chown=tester:tester go.mod go.sum ./
COPY --chown=tester:tester etcdkeys/go.mod etcdkeys/go.sum etcdkeys/
COPY --chown=tester:tester libtlsgrpc/go.mod libtlsgrpc/go.sum libtlsgrpc/
COPY --chown=tester:tester libtlsprom/go.mod libtlsprom/go.sum libtlsprom/
COPY --chown=tester:tester cmd/tlsresume/go.mod cmd/tlsresume/go.sum cmd/tlsresume/
RUN go mod download \
	&& (cd etcdkeys && go mod download) \
	&& (cd libtlsgrpc && go mod download) \
	&& (cd libtlsprom && go mod download) \
	&& (cd cmd/tlsresume && go mod download)

# Warm the build cache with the standard library, plain and with -race, under
# the same cgo settings scripts/test uses. This also checks, at build time,
# that every package scripts/env.sh wants is installed (it would need root to
# install one that is missing).
COPY --chown=tester:tester scripts/env.sh scripts/env.sh
RUN bash -c '. scripts/env.sh && libtls_setup && go build std && go build -race std'

COPY --chown=tester:tester . .

CMD ["bash", "scripts/test"]
