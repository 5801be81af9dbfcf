# syntax=docker/dockerfile:1
# flow-like-api: HTTP API. Build from the repository root:
#   docker build -f docker/api.Dockerfile -t ghcr.io/flow-like/flow-like-api:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p flow-like-api --bin flow-like-api \
 && install -D -m 0755 target/release/flow-like-api /out/flow-like-api

# Debian slim rather than distroless so docker-compose health checks can run curl.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 flowlike \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin flowlike
COPY --from=build /out/flow-like-api /usr/local/bin/flow-like-api
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flow-like-api"]
CMD ["serve"]
