# syntax=docker/dockerfile:1
# Build: make docker-build IMAGE=registry.example.com/istio-acme-issuer:v0.1.0 VERSION=v0.1.0
# (docker buildx build --platform linux/amd64,linux/arm64 for both).
# The build stage copies the whole module (the build context, minus
# .dockerignore), so a new package cannot be forgotten; `make verify` builds
# the binary from exactly what this stage copies, for both platforms.
#
# The base images are arguments: the release workflow resolves each to its
# digest at build time and passes NAME:TAG@sha256:..., and the image records
# its base in the OCI base-image labels.
ARG GO_IMAGE=golang:1.26
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
# The same flags as `make build`.
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/istio-acme-issuer ./cmd/istio-acme-issuer

FROM ${BASE_IMAGE}
ARG VERSION=dev
ARG BASE_IMAGE
LABEL org.opencontainers.image.title="istio-acme-issuer" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.opencontainers.image.description="cert-manager external issuer that solves ACME HTTP-01 through Istio's networking API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/istio-acme/istio-acme-issuer"
COPY --from=build /out/istio-acme-issuer /istio-acme-issuer
COPY --from=build /src/LICENSE /LICENSE
USER 65532:65532
EXPOSE 8089 8080 8081
ENTRYPOINT ["/istio-acme-issuer"]
