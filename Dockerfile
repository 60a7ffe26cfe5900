# syntax=docker/dockerfile:1
# tether's container image: built with the Rust toolchain, run on distroless (glibc, CA
# certificates, no shell, user 65532), the image the Helm chart's Deployment expects.
#   docker build -t ghcr.io/tether-dev/tether:0.1.0 .
#   docker build --build-arg PGO=1 ...   a profile-guided build (scripts/pgo-build.sh: the
#                                        bench's traffic trains it; 7-15% fewer instructions per
#                                        request, see README "Speed")

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin tether \
    && rm -rf src
COPY src ./src
ARG PGO=0
COPY bench ./bench
COPY scripts ./scripts
RUN touch src/main.rs src/lib.rs \
    && if [ "$PGO" = 1 ]; then cp "$(scripts/pgo-build.sh)" target/release/tether; \
       else cargo build --release --locked --bin tether; fi

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tether /usr/local/bin/tether
USER 65532:65532
# Proxy (HTTP, HTTPS) and admin (/healthz, /readyz, /metrics, /status).
EXPOSE 8080 8443 10254
ENTRYPOINT ["/usr/local/bin/tether"]
CMD ["run", "--kube"]
