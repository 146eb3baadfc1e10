# Build: docker build --build-arg VERSION=v0.1.0 -t istio-acme-issuer .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
COPY issuer/ issuer/
COPY solver/ solver/
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/istio-acme-issuer ./cmd/istio-acme-issuer

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/istio-acme-issuer /istio-acme-issuer
USER 65532:65532
EXPOSE 8089 8080 8081
ENTRYPOINT ["/istio-acme-issuer"]
