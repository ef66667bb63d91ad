# syntax=docker/dockerfile:1
# The publicdigit image: the API server, tenantctl and the container health
# check, static binaries on distroless (CA certificates, tzdata, a non-root
# user, no shell). The default command serves the API; run tenantctl with
#   docker run --rm --env-file … publicdigit tenantctl db init
# (the entrypoint is none: the first word is the program).
# No Docker engine runs where this repository is developed and tested, so
# this file is not built by the tests; docs/OPERATIONS.md says what is checked.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first: this layer is cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY internal/ internal/
COPY schema/ schema/
# The HCL schemas and the OpenAPI document are embedded (go:embed), so the
# binaries are all the final image needs.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/ \
        ./cmd/publicdigit ./cmd/tenantctl ./cmd/healthcheck

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/publicdigit /out/tenantctl /out/healthcheck /usr/local/bin/
# uid 65532 (nonroot); nothing is written to disk.
USER nonroot:nonroot
# Configuration comes from PD_ environment variables (README, Configuration).
ENV PD_HTTP__ADDR=0.0.0.0:8080 \
    PD_LOG__FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/healthcheck", "http://127.0.0.1:8080/healthz"]
CMD ["/usr/local/bin/publicdigit"]
