# syntax=docker/dockerfile:1
# flow-like-executor: runs one execution attempt inside a Kubernetes Job. Build from the repository root:
#   docker build -f docker/executor.Dockerfile -t ghcr.io/flow-like/flow-like-executor:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p flow-like-executor --bin flow-like-executor \
 && install -D -m 0755 target/release/flow-like-executor /out/flow-like-executor

# Distroless: no shell or package manager inside the sandbox that runs user workflows; uid 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/flow-like-executor /usr/local/bin/flow-like-executor
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/flow-like-executor"]
