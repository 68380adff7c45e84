# certgate container image.
#   docker build -t certgate .
#   docker run --rm -v $PWD/config:/etc/certgate/config:ro -p 8443:8443 certgate \
#     run --config /etc/certgate/config/certgate.toml
#
# Build stage: the official Rust image (Debian bookworm), release build with the lock file.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY testpki ./testpki
COPY config ./config
RUN cargo build --release --locked --bin certgate \
    && strip target/release/certgate

# Run stage: distroless (glibc + CA roots, no shell, no package manager), non-root user 65532.
# The CA roots are what `https://` upstreams without `ca` are verified against.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/certgate /usr/local/bin/certgate
USER 65532:65532
EXPOSE 8443 9901
# No HEALTHCHECK: orchestrators probe /healthz and /readyz on the admin port.
ENTRYPOINT ["/usr/local/bin/certgate"]
CMD ["run", "--config", "/etc/certgate/config/certgate.toml"]
