# One image recipe for every CryptoPulse service:
#
#   docker build --build-arg SERVICE=gateway -t cryptopulse/gateway .
#
# SERVICE is auth, gateway, fetcher or cgsim (the CoinGecko simulator). The
# result is a static binary on a distroless base (no shell, no package
# manager), run as a non-root user.

# Keep in step with the go line of go.work (e2e/deploy_test.go checks it):
# the official images run with GOTOOLCHAIN=local and will not fetch a newer Go.
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-alpine AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false

# Module files first, so the dependency layer is rebuilt only when a go.mod
# or go.sum changes. The services' replace directives point at ../../libs and
# ../../tools and ../../testkit, and go.work names every module, so all of them
# are needed.
COPY go.work go.work.su[m] ./
COPY libs/go.mod libs/go.su[m] libs/
COPY tools/go.mod tools/go.su[m] tools/
COPY testkit/go.mod testkit/go.su[m] testkit/
COPY services/auth/go.mod services/auth/go.su[m] services/auth/
COPY services/gateway/go.mod services/gateway/go.su[m] services/gateway/
COPY services/fetcher/go.mod services/fetcher/go.su[m] services/fetcher/
COPY e2e/go.mod e2e/go.su[m] e2e/
COPY deploy/k8s/go.mod deploy/k8s/go.su[m] deploy/k8s/
RUN go mod download

# No "# syntax=" line and no RUN --mount: the first makes BuildKit pull a
# frontend image (impossible without a registry), the second fails under the
# classic builder, which Engine 20.10 and Compose v1 use by default. Both
# builders take this file as it is.
COPY . .
# Every binary in one layer that every service's image shares (no build
# argument above it): the dependencies compile once for all five images, not
# once per image, which is most of a cold `up --build`.
RUN go build -trimpath -ldflags="-s -w" -o /out/ \
    ./services/auth ./services/gateway ./services/fetcher ./tools/cgsim/cmd/cgsim ./tools/healthcheck

FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE=gateway
LABEL org.opencontainers.image.title="cryptopulse-${SERVICE}" \
      org.opencontainers.image.description="CryptoPulse ${SERVICE}"
COPY --from=build /out/${SERVICE} /service
COPY --from=build /out/healthcheck /healthcheck
# distroless's "nonroot" user; numeric, so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
ENV HOST=0.0.0.0 PORT=3000
EXPOSE 3000
# Liveness by default; the compose files ask for /ready where it matters.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 CMD ["/healthcheck"]
# SIGTERM (docker stop) is the graceful shutdown; the binary is PID 1 and
# handles it itself.
ENTRYPOINT ["/service"]
