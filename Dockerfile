# syntax=docker/dockerfile:1
# The one `restock` binary (gateway, worker, factory simulator, migrate), for
# docker-compose.temporal.yml or any container platform:
#
#   docker build -t restock:local .
#   docker run --rm restock:local --help
#
# Build stage: the workspace's locked dependencies; the cargo registry and target directory are
# cache mounts, so a rebuild after a source change recompiles only the changed crates.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release -p restock --locked \
    && install -D -m 0755 target/release/restock /out/restock

# Runtime stage: the binary, CA certificates (TLS to SMTP and factories) and busybox, whose
# `busybox wget` is the compose file's HTTP healthcheck (/healthz). Runs as an unprivileged user.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates busybox \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 restock \
    && useradd --system --uid 10001 --gid restock --home-dir /var/lib/restock --shell /usr/sbin/nologin restock \
    && install -d -o restock -g restock -m 0750 /var/lib/restock
COPY --from=build /out/restock /usr/local/bin/restock
# Numeric, so that platforms enforcing "run as non-root" can verify it.
USER 10001:10001
# The default SQLite database (.restock/restock.db) would live here; the compose stack uses
# PostgreSQL instead.
WORKDIR /var/lib/restock
# gRPC, HTTP (/healthz, factory callbacks), factory simulator.
EXPOSE 50051 8080 8090
ENTRYPOINT ["restock"]
CMD ["--help"]
