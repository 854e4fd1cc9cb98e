#!/usr/bin/env bash
# Builds, offline from Debian's packages, stand-ins for the base images the
# Dockerfile and compose files name (postgres:16-alpine, redis:7-alpine,
# nginx:1.27-alpine, golang:<GO_VERSION>-alpine,
# gcr.io/distroless/static-debian12:nonroot), tagged with exactly those
# names, so that `docker compose ... up --build` runs the files unchanged on
# an engine that cannot pull. Users pull the official images instead; these
# exist for make test-docker only (docs/docker.md).
#
# Each image carries a label with the hash of its recipe (its directory under
# scripts/docker/standins, the base image it starts from, the machine's local
# CA certificates, the Go version): an image whose label matches is kept, so
# a second run rebuilds nothing unchanged. A tag that exists without the
# label is an official image pulled from a registry, and is left alone.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/scripts/docker/standins"
cache="${CRYPTOPULSE_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cryptopulse-docker}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
label=org.cryptopulse.standin.recipe
go_version="$(sed -n 's/^ARG GO_VERSION=//p' "$root/Dockerfile")"
[ -n "$go_version" ] || { echo "standins: no ARG GO_VERSION in Dockerfile" >&2; exit 1; }

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

log() { echo "standins: $*" >&2; }

# recipe_key prints the hash of the files under the given paths plus any
# extra words: what decides an image's content.
recipe_key() {
	local paths=() extra=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do paths+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	extra=("$@")
	{
		printf '%s\n' "${extra[@]}"
		find "${paths[@]}" -type f -print0 | sort -z | xargs -0 -r sha256sum | sed "s#  $root/#  #"
	} | sha256sum | cut -c1-32
}

label_of() {
	docker image inspect -f "{{index .Config.Labels \"$label\"}}" "$1" 2>/dev/null || true
}

# fresh tag key: true when tag is ours and built from this recipe, or is not
# ours at all (a pulled official image, which is better than a stand-in).
fresh() {
	local have
	docker image inspect "$1" >/dev/null 2>&1 || return 1
	have="$(label_of "$1")"
	if [ -z "$have" ] || [ "$have" = "<no value>" ]; then
		log "$1 exists and is not a stand-in: using it as it is"
		return 0
	fi
	[ "$have" = "$2" ]
}

# base suite: a minimal Debian root made by debootstrap, imported as
# cryptopulse-standin/debian:<suite>. The tarball is cached, so a rebuild
# of the image (e.g. after `docker image prune`) needs no download.
base() {
	local suite="$1" tag="cryptopulse-standin/debian:$1" key tarball rootfs
	key="$(recipe_key "$here/base" -- "debootstrap --variant=minbase $suite $mirror")"
	if fresh "$tag" "$key"; then
		log "$tag up to date"
		return
	fi
	tarball="$cache/debian-$suite-$key.tar"
	if [ ! -s "$tarball" ]; then
		command -v debootstrap >/dev/null || {
			log "installing debootstrap"
			$sudo apt-get update -qq
			$sudo apt-get install -y -qq debootstrap >/dev/null
		}
		rootfs="$cache/rootfs-$suite.tmp"
		$sudo rm -rf "$rootfs"
		mkdir -p "$cache"
		log "debootstrap $suite (a few minutes)"
		$sudo debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$cache/debootstrap-$suite.log" 2>&1 || {
			tail -20 "$cache/debootstrap-$suite.log" >&2
			exit 1
		}
		$sudo cp "$here/base/policy-rc.d" "$rootfs/usr/sbin/policy-rc.d"
		$sudo cp "$here/base/apt.conf" "$rootfs/etc/apt/apt.conf.d/90standin"
		$sudo rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
		$sudo tar -C "$rootfs" -cf "$tarball.tmp" .
		$sudo rm -rf "$rootfs"
		mv "$tarball.tmp" "$tarball"
	fi
	log "importing $tag"
	docker import --change "LABEL $label=$key" --change 'CMD ["bash"]' \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		"$tarball" "$tag" >/dev/null
}

# standin dir tag [build-arg...]: builds scripts/docker/standins/<dir> with
# the classic builder (it needs neither BuildKit nor buildx) as tag.
standin() {
	local dir="$1" tag="$2" from key ctx
	shift 2
	from="$(sed -n 's/^FROM \([^ ]*\).*/\1/p' "$here/$dir/Dockerfile" | head -1)"
	key="$(recipe_key "$here/$dir" "$ctx_ca" -- "$(docker image inspect -f '{{.Id}}' "$from")" "$@")"
	if fresh "$tag" "$key"; then
		log "$tag up to date"
		return
	fi
	ctx="$(mktemp -d)"
	cp -a "$here/$dir/." "$ctx/"
	cp -a "$ctx_ca" "$ctx/local-ca"
	log "building $tag"
	local args=()
	for a in "$@"; do args+=(--build-arg "$a"); done
	if ! DOCKER_BUILDKIT=0 docker build -q --force-rm --label "$label=$key" "${args[@]}" -t "$tag" "$ctx" >"$cache/build-$dir.log" 2>&1; then
		tail -30 "$cache/build-$dir.log" >&2
		rm -rf "$ctx"
		exit 1
	fi
	rm -rf "$ctx"
}

mkdir -p "$cache"
# The machine's local CA certificates (a TLS-inspecting egress proxy's, say):
# the images that talk HTTPS trust what the host trusts.
ctx_ca="$cache/local-ca"
rm -rf "$ctx_ca"
mkdir -p "$ctx_ca"
cp /usr/local/share/ca-certificates/*.crt "$ctx_ca/" 2>/dev/null || true

base bookworm
base sid
standin postgres postgres:16-alpine
standin redis redis:7-alpine
standin nginx nginx:1.27-alpine
standin golang "golang:${go_version}-alpine" "GO_VERSION=$go_version"
standin distroless gcr.io/distroless/static-debian12:nonroot
log "ready: postgres:16-alpine redis:7-alpine nginx:1.27-alpine golang:${go_version}-alpine gcr.io/distroless/static-debian12:nonroot"
