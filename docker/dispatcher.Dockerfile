# syntax=docker/dockerfile:1
# flow-like-dispatcher, with flow-like-executor beside it for the process runner (docker-compose, single machine).
# On Kubernetes the dispatcher starts executor Jobs from the separate executor image instead. Build from the root:
#   docker build -f docker/dispatcher.Dockerfile -t ghcr.io/flow-like/flow-like-dispatcher:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p flow-like-dispatcher --bin flow-like-dispatcher \
        -p flow-like-executor --bin flow-like-executor \
 && install -D -m 0755 target/release/flow-like-dispatcher /out/flow-like-dispatcher \
 && install -D -m 0755 target/release/flow-like-executor /out/flow-like-executor

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 flowlike \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin flowlike
COPY --from=build /out/flow-like-dispatcher /out/flow-like-executor /usr/local/bin/
USER 65532:65532
ENV DISPATCHER_EXECUTOR_PATH=/usr/local/bin/flow-like-executor
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/flow-like-dispatcher"]
CMD ["run"]
