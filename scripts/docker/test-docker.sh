#!/usr/bin/env bash
# make test-docker: the multi-instance deployment guide on the real Docker
# engine, from a machine with nothing prepared. Installs the Compose v2 CLI
# plugin (compose-plugin.sh), builds the stand-in base images offline
# (standins.sh), then runs e2e/dockerguide, which types the guide's
# `docker compose` commands in a copy of the repository. Whatever happens,
# every container, network and volume of the project is removed at the end
# (the images stay, so the next run is warm).
#
# DOCKERGUIDE_BENCH=path appends the run's figures there (make
# bench-docker writes bench/docker-guide.txt).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
start=$(date +%s)
project=cryptopulse

docker info >/dev/null 2>&1 || {
	echo "test-docker: no Docker engine answers (docker info failed); it is part of this machine kind" >&2
	exit 1
}

# Everything labelled with the project, whichever step left it: the test's
# own teardown runs first; this is for a test binary killed by its timeout.
cleanup() {
	local ids
	ids="$(docker ps -aq --filter "label=com.docker.compose.project=$project")"
	[ -z "$ids" ] || docker rm -f -v $ids >/dev/null
	ids="$(docker network ls -q --filter "label=com.docker.compose.project=$project")"
	[ -z "$ids" ] || docker network rm $ids >/dev/null
	ids="$(docker volume ls -q --filter "label=com.docker.compose.project=$project")"
	[ -z "$ids" ] || docker volume rm $ids >/dev/null
}
trap cleanup EXIT

bash scripts/docker/compose-plugin.sh
prepared=$(date +%s)
bash scripts/docker/standins.sh
images=$(date +%s)

# The classic builder, as Engine 20.10 and Compose v1 use by default: no
# buildx plugin is needed, and the Dockerfile must work without BuildKit.
export DOCKER_BUILDKIT=0
report="$(mktemp)"
set +e
DOCKERGUIDE_REPORT="$report" go test -tags dockerguide -count=1 -timeout 60m -v ./e2e/dockerguide/ 2>&1 |
	tee dockerguide.out | grep -E '^\s*(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go:[0-9]+'
status=${PIPESTATUS[0]}
set -e
end=$(date +%s)

summary="$(
	echo "# make test-docker, $(date -u +%FT%TZ), $(nproc) cores, Docker Engine $(docker version -f '{{.Server.Version}}'), $(docker compose version)"
	cat "$report"
	echo "compose plugin ready: $((prepared - start)) s; base images ready: $((images - prepared)) s; guide test: $((end - images)) s"
	echo "make test-docker total: $((end - start)) s (exit $status)"
)"
rm -f "$report"
echo "$summary"
if [ -n "${DOCKERGUIDE_BENCH:-}" ]; then
	printf '%s\n\n' "$summary" >>"$DOCKERGUIDE_BENCH"
fi
exit "$status"
