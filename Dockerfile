# certgate container image.
#   docker build -t certgate .
#   docker run --rm -p 8443:8443 \
#     -v "$PWD/config:/etc/certgate/config:ro" -v "$PWD/certs:/etc/certgate/certs:ro" \
#     certgate run --config /etc/certgate/config/certgate.toml
# config/certgate.toml names its files relative to itself (../certs/...), so both directories are
# mounted side by side. Inside the container 127.0.0.1 is the container's own loopback: the
# shipped config's admin listener (127.0.0.1:9901) answers only there — bind it to 0.0.0.0:9901
# and publish it (-p 9901:9901) to probe it from outside, as the Kubernetes example does — and
# its upstream (127.0.0.1:9000) must run in the same network namespace (a sidecar in one pod,
# or docker run --network container:APP); otherwise point upstreams at the API's address.
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
