# The `control` binary for envoy/docker-compose.yaml. Build context: the repository root.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p alp-control

FROM debian:bookworm-slim
COPY --from=build /src/target/release/control /usr/local/bin/control
ENTRYPOINT ["/usr/local/bin/control"]
