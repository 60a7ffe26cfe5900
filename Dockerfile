# syntax=docker/dockerfile:1
# tether's container image: built with the Rust toolchain, run on distroless (glibc, CA
# certificates, no shell, user 65532), the image the Helm chart's Deployment expects.
#   docker build -t ghcr.io/tether-dev/tether:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin tether \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin tether

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tether /usr/local/bin/tether
USER 65532:65532
# Proxy (HTTP, HTTPS) and admin (/healthz, /readyz, /metrics, /status).
EXPOSE 8080 8443 10254
ENTRYPOINT ["/usr/local/bin/tether"]
CMD ["run", "--kube"]
