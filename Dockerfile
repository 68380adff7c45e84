# Multi-stage build: compile with the official Rust image, run as non-root on a slim base.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
RUN cargo build --release --locked && strip target/release/certgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/certgate /usr/local/bin/certgate
USER 65532:65532
EXPOSE 8443 9901
ENTRYPOINT ["/usr/local/bin/certgate"]
CMD ["run", "--config", "/etc/certgate/certgate.toml"]
