#!/usr/bin/env bash
# Installs Docker Compose v2 as the Docker CLI plugin (`docker compose`),
# built from the Go module proxy, unless a plugin of at least the version
# below already runs.
#
# Why v5.0.2: the first release of the v5 module (github.com/docker/compose/v5)
# on the proxy. Its go.mod asks for go 1.24.9, so it builds with our Go 1.26
# as it is, without fetching a toolchain (v5.7.x asks for go 1.26.11), and it
# still talks through the docker/docker v28 client, which negotiates down to
# Engine 20.10's API 1.41; make test-docker proves it on such an engine. No
# buildx: with DOCKER_BUILDKIT=0 (which make test-docker sets) Compose builds
# through the engine's classic builder, as Compose v1 and Engine 20.10 do by
# default, and the Dockerfile works with either builder.
set -euo pipefail

version="${COMPOSE_VERSION:-v5.0.2}"
module=github.com/docker/compose/v5
dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

have="$(docker compose version --short 2>/dev/null || true)"
if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "${version#v}" "${have#v}" | sort -V | head -1)" = "${version#v}" ]; then
	echo "compose-plugin: docker compose $have already installed" >&2
	exit 0
fi

echo "compose-plugin: building $module@$version from the Go module proxy (a few minutes)" >&2
gobin="$(mktemp -d)"
trap 'rm -rf "$gobin"' EXIT
GOTOOLCHAIN=local GOBIN="$gobin" GOFLAGS=-buildvcs=false go install -trimpath \
	-ldflags "-s -w -X $module/internal.Version=$version" "$module/cmd@$version"
mkdir -p "$dir"
install -m 0755 "$gobin/cmd" "$dir/docker-compose"
docker compose version >&2
