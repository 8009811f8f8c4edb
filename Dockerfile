# syntax=docker/dockerfile:1
# The `earshot` binary in a small, non-root runtime image. Every service runs from this one
# image: the Deployment picks the subcommand (`earshot collector`, `enricher`, `router`, `sink`).
#
#   docker build -t earshot:dev .
#
# Build stage: librdkafka is compiled from the rdkafka crate's bundled source, which needs a C
# toolchain, make and cmake; its `ssl` feature links the system OpenSSL (libssl-dev, pkg-config).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The caches keep the registry and compiled dependencies between builds; the binary is copied
# out of the cached target directory because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p earshot \
 && install -D -m 0755 target/release/earshot /out/earshot

# Runtime stage: glibc, OpenSSL 3 (librdkafka's TLS and SCRAM) and the CA bundle (Kafka TLS,
# webhooks over HTTPS). Nothing else: no shell tools are needed by the services.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 earshot \
 && useradd --system --uid 10001 --gid earshot --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin earshot \
 && install -d -o earshot -g earshot -m 0750 /var/lib/earshot /var/lib/earshot/parquet
COPY --from=build /out/earshot /usr/local/bin/earshot
# Numeric, so that Kubernetes' runAsNonRoot can check it without resolving a user name.
USER 10001:10001
# 8080: the collector's ingest endpoint; 9464: /metrics, /healthz and /readyz.
EXPOSE 8080 9464
ENTRYPOINT ["/usr/local/bin/earshot"]
CMD ["--help"]
