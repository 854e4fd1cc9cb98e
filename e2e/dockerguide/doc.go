// Package dockerguide runs the multi-instance deployment guide on a real
// Docker engine, command by command, as a user types it: `docker compose -f
// docker-compose.multi.yml ...` in a copy of the repository with a .env made
// from .env.example, and only HTTP to 127.0.0.1:3000 and `docker compose
// exec` to look inside. The test needs the engine, the Compose v2 plugin and
// the base images, which scripts/docker/test-docker.sh prepares; it is built
// only with the dockerguide tag (make test-docker), so `go test ./e2e/...`
// leaves it out. docs/docker.md maps each command of the guide to its step.
package dockerguide
